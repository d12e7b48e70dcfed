// bench_table: shm_table against its anchors, in one run, on one machine.
//
// 100,000 keys of 16 bytes with 100-byte values: lookups/s from 1 and from
// 2 reader processes, inserts/s (new keys, overwrites from 1 and 2
// processes), and a 90 % lookup / 10 % overwrite mix; side by side with
// Erlang ETS (a set with read_concurrency, erl +S 2, same sizes and walk,
// bench/table/ets_bench.erl) and Redis GET/SET on loopback (our own
// redis-server on a free port, driven by redis-benchmark). An anchor whose
// program is not installed is reported as such and skipped.
//
// Every process walks the keys with the same fixed stride (coprime to the
// key count) from its own start: cheap to compute, scattered over the table.
// The starts are spread evenly over the keys, so that with --stride 1 no
// reader walks just behind another one through data the other has just
// pulled into the shared cache.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include <otpd/bench/support.hpp>
#include <otpd/core/cli.hpp>
#include <otpd/core/clock.hpp>
#include <otpd/core/main.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/shm_table/table.hpp>

#ifndef OTPD_ETS_BENCH_SRC
#define OTPD_ETS_BENCH_SRC "bench/table/ets_bench.erl"
#endif

namespace ob = otpd::bench;
namespace st = otpd::shm_table;
namespace rt = otpd::runtime;
using otpd::core::monotonic_ns;
using otpd::core::unique_fd;

namespace {

// The walk's step; --stride 1 walks the keys in insertion order (cache
// friendly: slots are allocated in that order), the default scatters them.
std::uint64_t stride_step = 40503;

std::string key_of(std::uint64_t i) {
  return fmt::format("k{:015}", i);
}
std::string value_of(std::uint64_t i) {
  std::string v(100, 'v');
  std::memcpy(v.data(), &i, 8);
  return v;
}

// batched: lookups 16 keys per lookup_many call (the table's MGET).
enum class workload { lookups, batched, overwrites, mix };
constexpr std::size_t batch_keys = 16;

struct worker_result {
  std::uint64_t ops = 0;
  std::uint64_t found = 0;
  std::int64_t ns = 0;
};

// Runs the workload in nprocs processes started together; returns total
// operations per second (total ops / the slowest process's time).
// map: when set, the processes read this in-process hash map (a copy-on-write
// image inherited through fork) instead of the shm table: the machine's
// ceiling for a hash lookup, measured in the same run.
using plain_map = std::unordered_map<std::string_view, std::string>;

double run_procs(const std::string& node, const std::vector<std::string_view>& keys,
                 const std::vector<std::string>& values, workload w, int nprocs,
                 std::uint64_t ops_per_proc, const plain_map* map = nullptr) {
  struct child {
    otpd::core::spawned proc;
    unique_fd go_w;
    unique_fd res_r;
  };
  std::vector<child> kids;
  const std::uint64_t n = keys.size();
  const std::uint64_t stride = stride_step;
  for (int c = 0; c < nprocs; ++c) {
    auto go = otpd::core::make_pipe();
    auto res = otpd::core::make_pipe();
    if (!go || !res) {
      std::fprintf(stderr, "bench_table: unable to make a pipe: %s\n",
                   (go ? res : go).message().c_str());
      std::exit(111);
    }
    unique_fd go_r = std::move(go->read);
    unique_fd go_w = std::move(go->write);
    unique_fd res_r = std::move(res->read);
    unique_fd res_w = std::move(res->write);
    otpd::core::spawn_options so;
    int gr = go_r.get();
    int rw = res_w.get();
    auto proc = otpd::core::spawn_function(so, [&, c, gr, rw, stride] {
      auto t = st::table::open(node, "bench");
      if (!t) {
        return 1;
      }
      char b = 'r';
      if (::write(rw, &b, 1) != 1 || ::read(gr, &b, 1) != 1) {
        return 2;
      }
      std::string out;
      out.reserve(128);
      worker_result r;
      std::uint64_t x =
          (static_cast<std::uint64_t>(c) * n / static_cast<std::uint64_t>(nprocs) + 13) % n;
      std::string_view batch[batch_keys];
      std::string batch_out[batch_keys];
      bool batch_found[batch_keys];
      std::int64_t t0 = monotonic_ns();
      if (w == workload::batched) {
        for (std::uint64_t i = 0; i + batch_keys <= ops_per_proc; i += batch_keys) {
          for (auto& k : batch) {
            x += stride;
            if (x >= n) {
              x -= n;
            }
            k = keys[x];
          }
          auto got = t->lookup_many(batch, batch_out, batch_found);
          r.found += got ? *got : 0;
        }
        r.ns = monotonic_ns() - t0;
        r.ops = ops_per_proc / batch_keys * batch_keys;
        return ::write(rw, &r, sizeof r) == sizeof r ? 0 : 4;
      }
      for (std::uint64_t i = 0; i < ops_per_proc; ++i) {
        x += stride;
        if (x >= n) {
          x -= n;
        }
        bool write = w == workload::overwrites || (w == workload::mix && i % 10 == 0);
        if (write) {
          if (!t->insert(keys[x], values[x])) {
            return 3;
          }
        } else if (map != nullptr) {
          auto it = map->find(keys[x]);
          if (it != map->end()) {
            out.assign(it->second);
            ++r.found;
          }
        } else if (t->lookup_into(keys[x], out)) {
          ++r.found;
        }
      }
      r.ns = monotonic_ns() - t0;
      r.ops = ops_per_proc;
      return ::write(rw, &r, sizeof r) == sizeof r ? 0 : 4;
    });
    if (!proc) {
      std::fprintf(stderr, "bench_table: unable to fork: %s\n", proc.error().message().c_str());
      std::exit(111);
    }
    kids.push_back({std::move(*proc), std::move(go_w), std::move(res_r)});
  }
  for (auto& k : kids) {
    char b;
    if (::read(k.res_r.get(), &b, 1) != 1) {
      std::fprintf(stderr, "bench_table: a worker failed to start\n");
      std::exit(111);
    }
  }
  for (auto& k : kids) {
    char b = 'g';
    (void)!::write(k.go_w.get(), &b, 1);
  }
  std::uint64_t total = 0;
  std::int64_t slowest = 1;
  for (auto& k : kids) {
    worker_result r;
    if (::read(k.res_r.get(), &r, sizeof r) != sizeof r) {
      std::fprintf(stderr, "bench_table: a worker failed\n");
      std::exit(111);
    }
    if ((w == workload::lookups || w == workload::batched) && r.found != r.ops) {
      std::fprintf(stderr, "bench_table: %llu of %llu lookups missed\n",
                   static_cast<unsigned long long>(r.ops - r.found),
                   static_cast<unsigned long long>(r.ops));
    }
    total += r.ops;
    slowest = std::max(slowest, r.ns);
    (void)otpd::core::reap(k.proc.pidfd.get());
  }
  return static_cast<double>(total) * 1e9 / static_cast<double>(slowest);
}

// --- anchors ---------------------------------------------------------------

std::map<std::string, double> run_ets(std::uint64_t nkeys, std::uint64_t ops, std::uint64_t stride,
                                      const std::string& script) {
  std::map<std::string, double> out;
  ob::temp_dir dir("otpd-etsbench");
  std::string cmd = fmt::format(
      "erl +S 2 -noshell -eval 'c:c(\"{}\", [{{outdir, \"{}\"}}]), "
      "ets_bench:main([list_to_atom(\"{}\"), list_to_atom(\"{}\"), list_to_atom(\"{}\")]).' "
      "2>&1",
      script, dir.path(), nkeys, ops, stride);
  std::string text = ob::run_capture(cmd);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) {
      eol = text.size();
    }
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    auto sp = line.find(' ');
    if (sp != std::string::npos) {
      try {
        out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
      } catch (...) {
      }
    }
  }
  if (out.empty()) {
    std::fprintf(stderr, "bench_table: ETS run gave no figures:\n%s\n", text.c_str());
  }
  return out;
}

struct redis_figures {
  std::map<std::string, double> c1;
  std::map<std::string, double> c2;
  std::map<std::string, double> c50p16;
};

// Our own redis-server driven by redis-benchmark; nullopt and `note` saying
// why when the server could not be started.
std::optional<redis_figures> run_redis(std::uint64_t nkeys, std::string& note) {
  try {
    ob::redis_server srv;
    auto bench = [&](int clients, int pipeline, int requests) {
      std::map<std::string, double> out;
      for (auto& b : ob::redis_benchmark({.port = srv.port(),
                     .clients = clients,
                     .requests = requests,
                     .pipeline = pipeline,
                     .keyspace = static_cast<int>(nkeys),
                     .value_size = 100})) {
        out[b.op] = b.ops_per_s;
      }
      return out;
    };
    redis_figures f;
    f.c1 = bench(1, 1, 50000);
    f.c2 = bench(2, 1, 80000);
    f.c50p16 = bench(50, 16, 1000000);
    return f;
  } catch (const std::exception& e) {
    note = std::string("Redis: ") + e.what();
    return std::nullopt;
  }
}

std::string rate(double v) {
  if (v <= 0) {
    return "-";
  }
  if (v >= 1e6) {
    return fmt::format("{:.2f} M/s", v / 1e6);
  }
  return fmt::format("{:.0f} k/s", v / 1e3);
}

}  // namespace

// The terms cache the other way: a cache_worker GenServer holding a map,
// each get a mailbox call (each put a cast). Same keys and walk; fewer ops,
// since every one is a round trip between two processes.
struct cache_worker_figures {
  double puts = 0;
  double get1 = 0;
  double get2 = 0;
};

std::optional<cache_worker_figures> run_cache_worker(const std::vector<std::string_view>& keys,
                                                     const std::vector<std::string>& values,
                                                     std::uint64_t calls) {
  ob::temp_dir dir("otpd-bench-cache");
  if (!rt::init({.runtime_dir = dir.path()})) {
    return std::nullopt;
  }
  auto w = rt::spawn_exec({ob::program_dir() + "/cache_worker", "--evict-ms", "60000"},
                          {.spawn = {.name = "bench_cache"}, .wait_ready = true});
  if (!w) {
    std::fprintf(stderr, "bench_table: unable to start cache_worker: %s\n",
                 w.error().message().c_str());
    return std::nullopt;
  }
  cache_worker_figures f;
  std::int64_t t0 = monotonic_ns();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto put = rt::pack(std::make_tuple(std::string("put"), std::string(keys[i]), values[i]));
    if (!rt::post_message(w->pid, rt::kind::cast, {}, put)) {
      return std::nullopt;
    }
  }
  // The puts are done when a call queued behind them is answered.
  if (!rt::flush() || !rt::call<std::tuple<std::string, std::size_t>>(
                          w->pid, std::make_tuple(std::string("size")), std::chrono::seconds(60))) {
    return std::nullopt;
  }
  f.puts = static_cast<double>(keys.size()) * 1e9 / static_cast<double>(monotonic_ns() - t0);
  auto reader = [&keys, server = w->pid](std::uint64_t n, std::uint64_t start) {
    for (std::uint64_t k = 0; k < n; ++k) {
      auto key = std::string(keys[(start + k * 40503) % keys.size()]);
      auto r = rt::call_message(server, rt::pack(std::make_tuple(std::string("get"), key)),
                                std::chrono::seconds(10));
      if (!r) {
        return 1;
      }
    }
    return 0;
  };
  t0 = monotonic_ns();
  if (reader(calls, 0) != 0) {
    return std::nullopt;
  }
  f.get1 = static_cast<double>(calls) * 1e9 / static_cast<double>(monotonic_ns() - t0);
  t0 = monotonic_ns();
  std::vector<rt::spawned_process> readers;
  for (std::uint64_t p = 0; p < 2; ++p) {
    auto r = rt::spawn([&reader, calls, p] { return reader(calls, p * 7919); }, {.monitor = true});
    if (!r) {
      return std::nullopt;
    }
    readers.push_back(*r);
  }
  for (const auto& r : readers) {
    auto down = rt::receive_ref(r.monitor_ref, rt::deadline::after(std::chrono::seconds(120)));
    if (!down || down->reason() != otpd::core::exit_reason::normal()) {
      return std::nullopt;
    }
  }
  f.get2 = static_cast<double>(2 * calls) * 1e9 / static_cast<double>(monotonic_ns() - t0);
  (void)rt::stop_server(w->pid);
  rt::shutdown();
  return f;
}

int run(int argc, char** argv) {
  otpd::core::cli::app app{"bench_table: shm_table vs Erlang ETS vs Redis"};
  std::uint64_t nkeys = 100000;
  std::uint64_t ops = 5000000;
  bool no_ets = false;
  bool no_redis = false;
  bool no_cache_worker = false;
  std::uint64_t calls = 50000;
  std::string ets_script = OTPD_ETS_BENCH_SRC;
  app.add("--keys", nkeys, "keys in the table");
  app.add("--ops", ops, "operations per process per measurement");
  app.add("--ets-script", ets_script, "path of ets_bench.erl");
  app.flag("--no-ets", no_ets, "skip the Erlang ETS anchor");
  app.flag("--no-redis", no_redis, "skip the Redis anchor");
  app.flag("--no-cache-worker", no_cache_worker, "skip the mailbox cache_worker column");
  app.add("--calls", calls, "cache_worker gets per process");
  app.add("--stride", stride_step,
          "step of the key walk (1: insertion order), the same for every column");
  if (auto rc = app.parse(argc, argv)) {
    return *rc;
  }
  // Every column walks with this step: coprime to the key count, so that a
  // walk visits every key once per round.
  stride_step %= std::max<std::uint64_t>(nkeys, 1);
  while (std::gcd(stride_step, nkeys) != 1) {
    ++stride_step;
  }

  static std::string node = fmt::format("bench{}", ::getpid());
  // Remove the bench's segments on every exit path of the parent (a failed
  // worker ends the run with exit()); forked workers leave them alone.
  static pid_t parent = ::getpid();
  std::atexit([] {
    if (::getpid() == parent) {
      (void)st::remove_all(node);
    }
  });
  st::table_options o;
  o.access = st::access_mode::public_table;
  o.max_entries = static_cast<std::uint32_t>(nkeys);
  o.max_item_bytes = 116;  // 16-byte key + 100-byte value
  auto t = st::table::create(node, "bench", o);
  if (!t) {
    std::fprintf(stderr, "bench_table: unable to create the table: %s\n",
                 t.error().message().c_str());
    return 111;
  }
  // Keys side by side in one buffer (16 bytes each), as a client holding its
  // keys would: the harness should not add a heap miss per lookup.
  std::string key_buf;
  key_buf.reserve(nkeys * 16);
  std::vector<std::string> values(nkeys);
  for (std::uint64_t i = 0; i < nkeys; ++i) {
    key_buf += key_of(i);
    values[i] = value_of(i);
  }
  std::vector<std::string_view> keys(nkeys);
  for (std::uint64_t i = 0; i < nkeys; ++i) {
    keys[i] = std::string_view(key_buf).substr(i * 16, 16);
  }

  std::int64_t t0 = monotonic_ns();
  for (std::uint64_t i = 0; i < nkeys; ++i) {
    if (!t->insert(keys[i], values[i])) {
      std::fprintf(stderr, "bench_table: insert failed\n");
      return 111;
    }
  }
  double ins_new = static_cast<double>(nkeys) * 1e9 / static_cast<double>(monotonic_ns() - t0);
  double look1 = run_procs(node, keys, values, workload::lookups, 1, ops);
  double look2 = run_procs(node, keys, values, workload::lookups, 2, ops);
  double many1 = run_procs(node, keys, values, workload::batched, 1, ops);
  double many2 = run_procs(node, keys, values, workload::batched, 2, ops);
  double over1 = run_procs(node, keys, values, workload::overwrites, 1, ops / 5);
  double over2 = run_procs(node, keys, values, workload::overwrites, 2, ops / 5);
  double mix1 = run_procs(node, keys, values, workload::mix, 1, ops);
  double mix2 = run_procs(node, keys, values, workload::mix, 2, ops);
  double ceil1 = 0;
  double ceil2 = 0;
  {
    plain_map map;
    for (std::uint64_t i = 0; i < nkeys; ++i) {
      map.emplace(keys[i], values[i]);
    }
    ceil1 = run_procs(node, keys, values, workload::lookups, 1, ops, &map);
    ceil2 = run_procs(node, keys, values, workload::lookups, 2, ops, &map);
  }
  std::string why;
  bool ok = static_cast<bool>(t->verify(&why));
  std::uint64_t memory = t->memory();
  (void)st::remove_all(node);

  std::map<std::string, double> ets;
  std::string ets_note;
  if (no_ets) {
    ets_note = "skipped (--no-ets)";
  } else if (!ob::have_program("erl")) {
    ets_note = "Erlang ETS: not installed (erl missing; Debian package erlang-base)";
  } else {
    ets = run_ets(nkeys, std::min<std::uint64_t>(ops, 2000000), stride_step, ets_script);
  }
  std::optional<redis_figures> redis;
  std::string redis_note;
  if (no_redis) {
    redis_note = "skipped (--no-redis)";
  } else if (!ob::have_program("redis-server") || !ob::have_program("redis-benchmark")) {
    redis_note = "Redis: not installed (redis-server / redis-benchmark missing; package redis)";
  } else {
    redis = run_redis(nkeys, redis_note);
  }

  std::optional<cache_worker_figures> cw;
  if (!no_cache_worker) {
    cw = run_cache_worker(keys, values, calls);
  }
  auto c = [&](double cache_worker_figures::*field) {
    return cw ? rate((*cw).*field) + " (call)" : std::string("-");
  };

  auto e = [&](const char* k) { return ets.count(k) != 0 ? rate(ets[k]) : std::string("-"); };
  auto r = [&](const std::map<std::string, double>& m, const char* k) {
    auto it = m.find(k);
    return it != m.end() ? rate(it->second) : std::string("-");
  };
  std::printf(
      "bench_table: %llu keys (16-byte keys, 100-byte values), %llu ops per process; "
      "shm segment %.1f MiB; verify after the run: %s\n\n",
      static_cast<unsigned long long>(nkeys), static_cast<unsigned long long>(ops),
      static_cast<double>(memory) / (1024.0 * 1024.0), ok ? "ok" : why.c_str());
  std::printf(
      "| measure | otpd shm_table | otpd cache_worker (GenServer, mailbox) | Erlang ETS set, "
      "read_concurrency, +S 2 | Redis loopback, redis-benchmark | target |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::string c1get = redis ? r(redis->c1, "GET") + " (GET, 1 client)" : "-";
  std::string c2get = redis ? r(redis->c2, "GET") + " (GET, 2 clients)" : "-";
  std::string c1set = redis ? r(redis->c1, "SET") + " (SET, 1 client)" : "-";
  std::string c2set = redis ? r(redis->c2, "SET") + " (SET, 2 clients)" : "-";
  std::printf("| lookups/s, 1 reader process | %s | %s | %s | %s | >= 8 M/s |\n",
              rate(look1).c_str(), c(&cache_worker_figures::get1).c_str(), e("lookup_1").c_str(),
              c1get.c_str());
  std::printf("| lookups/s, 2 reader processes (total) | %s | %s | %s | %s | >= 14 M/s |\n",
              rate(look2).c_str(), c(&cache_worker_figures::get2).c_str(), e("lookup_2").c_str(),
              c2get.c_str());
  std::printf(
      "| lookups/s, lookup_many (%zu keys per call), 1 / 2 reader processes | %s / %s | - | - | "
      "- | |\n",
      batch_keys, rate(many1).c_str(), rate(many2).c_str());
  std::printf("| inserts/s, new keys, 1 process | %s | %s | %s | - | |\n", rate(ins_new).c_str(),
              cw ? (rate(cw->puts) + " (cast)").c_str() : "-", e("insert_new").c_str());
  std::printf("| inserts/s, overwrites, 1 process | %s | - | %s | %s | |\n", rate(over1).c_str(),
              e("insert_overwrite").c_str(), c1set.c_str());
  std::printf("| inserts/s, overwrites, 2 processes (total) | %s | - | - | %s | |\n",
              rate(over2).c_str(), c2set.c_str());
  std::printf("| 90/10 lookup/overwrite mix, 1 process | %s | - | %s | - | |\n", rate(mix1).c_str(),
              e("mix_1").c_str());
  std::printf("| 90/10 lookup/overwrite mix, 2 processes (total) | %s | - | %s | - | |\n",
              rate(mix2).c_str(), e("mix_2").c_str());
  std::printf(
      "| ceiling: std::unordered_map in the reader's own memory, no lock, same walk, "
      "lookups/s 1 / 2 processes | %s / %s | | | | |\n",
      rate(ceil1).c_str(), rate(ceil2).c_str());
  if (redis) {
    std::printf("| Redis best case: 50 clients, pipeline 16 | | | | GET %s, SET %s | |\n",
                r(redis->c50p16, "GET").c_str(), r(redis->c50p16, "SET").c_str());
  }
  if (!ets_note.empty()) {
    std::printf("\n%s\n", ets_note.c_str());
  }
  if (!redis_note.empty()) {
    std::printf("\n%s\n", redis_note.c_str());
  }
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  // Errors are values below; an exception here is a bug (or bad_alloc).
  return otpd::core::guarded_main(argc, argv, run);
}

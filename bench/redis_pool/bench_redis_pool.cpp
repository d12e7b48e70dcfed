// bench_redis_pool: throughput and p50/p99 latency of the Redis pool at 1, 8
// and 64 concurrent callers, with the anchors measured in the same run
// against the same redis-server: redis-benchmark at the same concurrency and
// a direct hiredis loop. GET and SET, 100-byte values, 10,000 keys, loopback.
//
// Callers: `P` caller processes, each keeping C/P requests in flight through
// its pool_client (closed loop: each answer sends the next request). The
// workers are redis_worker programs started directly (no otpd in the path
// of a request: otpd only starts and restarts them).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <otpd/bench/support.hpp>
#include <otpd/core/cli.hpp>
#include <otpd/core/clock.hpp>
#include <otpd/core/main.hpp>
#include <otpd/redis_pool/facts.hpp>
#include <otpd/redis_pool/pool_client.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/testing/runtime_session.hpp>

namespace ob = otpd::bench;
namespace rp = otpd::redis_pool;
namespace rt = otpd::runtime;
using steady = std::chrono::steady_clock;

namespace {

constexpr std::size_t max_samples = 1 << 20;

struct row {
  std::string who;
  std::string op;
  int callers = 0;
  double ops_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
  std::string note;
};

row hiredis_loop(int port, bool set, int n, const std::string& value) {
  auto l = ob::hiredis_sync_loop(port, set, n, value);
  return {"hiredis sync loop", set ? "SET" : "GET", 1, l.ops_per_s, l.us.p50, l.us.p99,
          "one connection"};
}

// Shared with the caller processes (MAP_SHARED before fork): what each did.
struct shared_results {
  std::atomic<std::int64_t> ops{0};
  std::atomic<std::int64_t> errors{0};
  std::atomic<std::size_t> samples{0};
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::int64_t t_first_ns = 0;
  std::int64_t ns[max_samples];
};

// One caller process: `depth` requests in flight through its pool_client
// until n are answered.
int caller(shared_results* out, const rp::pool_options& po, bool set, int n, int depth, int salt) {
  auto c = rp::pool_client::open(po);
  if (!c) {
    std::fprintf(stderr, "caller: unable to open the pool: %s\n", c.error().message().c_str());
    return 1;
  }
  const std::string value(ob::redis_value_size, 'x');
  std::deque<std::pair<rp::pool_client::pending, std::int64_t>> inflight;
  std::uint64_t next = static_cast<std::uint64_t>(salt) * 7919;
  auto send_one = [&]() -> bool {
    std::string key = ob::redis_key(next++);
    std::int64_t t = otpd::core::monotonic_ns();
    auto p = set ? c->send({"SET", key, value}) : c->send({"GET", key});
    if (!p) {
      out->errors.fetch_add(1);
      return false;
    }
    inflight.emplace_back(*p, t);
    return true;
  };
  out->ready.fetch_add(1);
  while (out->go.load() == 0) {
    // Start together: the parent releases every caller at once.
  }
  int sent = 0;
  for (; sent < depth && sent < n; ++sent) {
    send_one();
  }
  std::int64_t done = 0;
  while (!inflight.empty()) {
    auto [p, t] = inflight.front();
    inflight.pop_front();
    auto r = c->await(p);
    std::int64_t now = otpd::core::monotonic_ns();
    if (!r || r->is_error()) {
      out->errors.fetch_add(1);
    }
    ++done;
    std::size_t k = out->samples.fetch_add(1);
    if (k < max_samples) {
      out->ns[k] = now - t;
    }
    if (sent < n) {
      ++sent;
      send_one();
    }
  }
  out->ops.fetch_add(done);
  return 0;
}

row pool_run(const rp::pool_options& po, bool set, int n, int callers, int procs) {
  void* mem = ::mmap(nullptr, sizeof(shared_results), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    throw std::runtime_error("mmap failed");
  }
  auto* res = new (mem) shared_results();
  std::vector<rt::spawned_process> kids;
  int per = std::max(1, callers / procs);
  for (int i = 0; i < procs; ++i) {
    auto k = rt::spawn([=] { return caller(res, po, set, n / procs, per, i); },
                       {.link = false, .monitor = true, .kill_with_parent = true, .name = {}});
    if (!k) {
      throw std::runtime_error("unable to spawn a caller: " + k.error().message());
    }
    kids.push_back(*k);
  }
  while (res->ready.load() < procs) {
    ::usleep(100);  // callers opening their pool clients
  }
  auto t0 = steady::now();
  res->go.store(1);
  for (auto& k : kids) {
    auto m = rt::receive_ref(k.monitor_ref, otpd::core::deadline::after(std::chrono::minutes(5)));
    if (!m || m->reason() != otpd::core::exit_reason::normal()) {
      throw std::runtime_error("a caller failed");
    }
  }
  double secs = std::chrono::duration<double>(steady::now() - t0).count();
  std::size_t ns_n = std::min<std::size_t>(res->samples.load(), max_samples);
  auto us = ob::summarize_ns_as_us(std::vector<std::int64_t>(res->ns, res->ns + ns_n));
  row r{"otpd pool",
        set ? "SET" : "GET",
        callers,
        static_cast<double>(res->ops.load()) / secs,
        us.p50,
        us.p99,
        fmt::format("{} worker(s), {} caller process(es) x {} in flight, {} errors",
                    po.size_if_unpublished, procs, per, res->errors.load())};
  res->~shared_results();
  ::munmap(mem, sizeof(shared_results));
  return r;
}

std::vector<row> redis_benchmark(int port, int clients, int n) {
  std::vector<row> rows;
  for (auto& b : ob::redis_benchmark({.port = port, .clients = clients, .requests = n})) {
    if (b.op == "SET" || b.op == "GET") {
      rows.push_back({"redis-benchmark", b.op, clients, b.ops_per_s, b.p50_us, b.p99_us,
                      fmt::format("{} connections", clients)});
    }
  }
  return rows;
}

}  // namespace

int run(int argc, char** argv) try {
  otpd::core::cli::app app{"bench_redis_pool: the Redis pool vs redis-benchmark and hiredis"};
  double scale = 1.0;
  unsigned workers = 2;
  int procs64 = 1;
  unsigned spin_us = 0;
  std::string worker_bin;
  app.add("--scale", scale, "multiply every request count by this (default 1)");
  app.add("--workers", workers, "pool size (default 2)");
  app.add("--procs", procs64, "caller processes at 8 and 64 callers (default 1)");
  app.add("--spin-us", spin_us, "redis_worker --spin-us (default 0)");
  app.add("--worker-bin", worker_bin, "redis_worker (default: beside this program)");
  if (auto rc = app.parse(argc, argv)) {
    return *rc;
  }
  auto n = [scale](int base) { return std::max(1000, static_cast<int>(base * scale)); };
  if (worker_bin.empty()) {
    worker_bin = ob::program_dir() + "/redis_worker";
  }

  ob::temp_dir tmp("otpd-bench-pool");
  const std::string& dir = tmp.path();
  std::string node = fmt::format("benchpool{}", ::getpid());
  ::setenv("OTPD_NODE", node.c_str(), 1);
  int rc = 0;
  {
    ob::redis_server srv;
    const std::string value(ob::redis_value_size, 'x');
    ob::redis_preload(srv.port(), value);
    otpd::testing::runtime_session session(dir + "/rt");
    if (!session.ok()) {
      throw std::runtime_error("unable to open a mailbox: " + session.error().message());
    }
    std::vector<pid_t> wpids;
    for (unsigned i = 0; i < workers; ++i) {
      rt::exec_options eo;
      eo.wait_ready = true;
      auto w = rt::spawn_exec(
          {worker_bin, "--redis", fmt::format("127.0.0.1:{}", srv.port()), "--pool", "bench",
           "--index", std::to_string(i), "--size", std::to_string(workers), "--wait-connected",
           "--timeout-ms", "10000", "--spin-us", std::to_string(spin_us)},
          eo);
      if (!w) {
        throw std::runtime_error("unable to start redis_worker: " + w.error().message());
      }
      wpids.push_back(w->pid);
    }
    rp::pool_options po;
    po.pool = "bench";
    po.size_if_unpublished = workers;
    po.strategy = rp::strategy::least_outstanding;
    po.timeout = std::chrono::seconds(30);

    std::vector<row> rows;
    for (bool set : {true, false}) {
      rows.push_back(hiredis_loop(srv.port(), set, n(20000), value));
      rows.push_back(pool_run(po, set, n(20000), 1, 1));
      rows.push_back(pool_run(po, set, n(100000), 8, std::min(procs64, 8)));
      rows.push_back(pool_run(po, set, n(200000), 64, procs64));
    }
    for (auto [clients, count] :
         {std::pair{1, 20000}, std::pair{8, 100000}, std::pair{64, 200000}}) {
      for (auto& r : redis_benchmark(srv.port(), clients, n(count))) {
        rows.push_back(r);
      }
    }
    std::printf("| client | op | callers | ops/s | p50 µs | p99 µs | note |\n");
    std::printf("|---|---|---:|---:|---:|---:|---|\n");
    for (const char* op : {"SET", "GET"}) {
      for (int callers : {1, 8, 64}) {
        for (auto& r : rows) {
          if (r.op == op && r.callers == callers) {
            std::printf("| %s | %s | %d | %.0f | %.1f | %.1f | %s |\n", r.who.c_str(), r.op.c_str(),
                        r.callers, r.ops_per_s, r.p50_us, r.p99_us, r.note.c_str());
          }
        }
      }
    }
    for (const char* op : {"SET", "GET"}) {
      double ours = 0;
      double anchor = 0;
      for (auto& r : rows) {
        if (r.op == op && r.callers == 64) {
          (r.who == "otpd pool" ? ours : anchor) = r.ops_per_s;
        }
      }
      if (anchor > 0) {
        std::printf("\n%s at 64 callers: otpd pool / redis-benchmark -c 64 = %.2f (target >= 0.80)",
                    op, ours / anchor);
      }
    }
    std::printf("\n");
    for (pid_t w : wpids) {
      if (auto s = rt::stop_server(w); !s) {
        std::fprintf(stderr, "bench_redis_pool: worker %d did not stop: %s\n", w,
                     s.error().message().c_str());
        rc = 1;
      }
    }
  }
  (void)otpd::shm_table::persistent_term::remove(node);
  return rc;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_redis_pool: %s\n", e.what());
  return 111;
}

int main(int argc, char** argv) {
  return otpd::core::guarded_main(argc, argv, run);
}

// bench_redis: throughput and latency (p50/p99) of the Redis clients, with
// the anchors measured in the same run against the same redis-server:
// hiredis' synchronous loop (one command, and pipelined x16) and
// redis-benchmark at the same concurrency. GET and SET, 100-byte values,
// 10,000 keys, over loopback TCP. The pool columns come with the pool.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/redis_client/async_client.hpp>
#include <otpd/redis_client/blocking_client.hpp>

namespace rc = otpd::redis_client;
using steady = std::chrono::steady_clock;

namespace {

constexpr int keys_n = 10000;
constexpr std::size_t value_size = 100;

struct row {
  std::string who;
  std::string op;
  std::string concurrency;
  double ops_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
  std::string note;
};

struct latencies {
  std::vector<std::int64_t> ns;
  [[nodiscard]] double pct(double p) {
    if (ns.empty()) {
      return 0;
    }
    auto k = static_cast<std::size_t>(p * static_cast<double>(ns.size() - 1));
    std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
    return static_cast<double>(ns[k]) / 1000.0;
  }
};

std::string key_of(std::uint64_t i) {
  return fmt::format("key:{:012}", i % keys_n);
}

int free_port() {
  otpd::core::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("unable to find a free port");
  }
  return ntohs(a.sin_port);
}

// One redis-server of our own: a free port, a private directory, no disk.
class server {
 public:
  server() {
    char tmpl[] = "/tmp/otpd-bench-redis.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = tmpl;
    port_ = free_port();
    otpd::core::spawn_options o;
    o.argv = {"redis-server",
              "--port",
              std::to_string(port_),
              "--bind",
              "127.0.0.1",
              "--dir",
              dir_,
              "--save",
              "",
              "--appendonly",
              "no",
              "--logfile",
              dir_ + "/redis.log",
              "--unixsocket",
              dir_ + "/redis.sock"};
    o.fds = {{-1, 0}};
    auto child = otpd::core::spawn(o);
    if (!child) {
      throw std::runtime_error("unable to start redis-server (is it installed?): " +
                               child.error().message());
    }
    pid_ = child->pid;
    pidfd_ = std::move(child->pidfd);
    auto until = otpd::core::deadline::after(std::chrono::seconds(10));
    while (!until.expired()) {
      auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", port_));
      if (c && c->command({"PING"})) {
        return;
      }
      if (otpd::core::try_reap(pidfd_.get())) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start; see " + dir_ + "/redis.log");
      }
      ::usleep(10000);  // start-up poll of a program we do not control
    }
    throw std::runtime_error("redis-server did not answer PING within 10 s");
  }
  ~server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      otpd::core::reap(pidfd_.get());
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  server(server&&) = delete;
  server& operator=(server&&) = delete;
  [[nodiscard]] int port() const { return port_; }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  otpd::core::unique_fd pidfd_;
};

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

void preload(int port, const std::string& value) {
  auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", port));
  for (int i = 0; i < keys_n; ++i) {
    (void)c->append({"SET", key_of(static_cast<std::uint64_t>(i)), value});
  }
  for (int i = 0; i < keys_n; ++i) {
    (void)c->get_reply();
  }
}

// hiredis' synchronous API directly: the floor for one connection.
row hiredis_sync(int port, bool set, int n, const std::string& value) {
  redisContext* ctx = redisConnect("127.0.0.1", port);
  latencies lat;
  lat.ns.reserve(static_cast<std::size_t>(n));
  auto t0 = steady::now();
  for (int i = 0; i < n; ++i) {
    std::string key = key_of(static_cast<std::uint64_t>(i));
    auto s = steady::now();
    void* r =
        set ? redisCommand(ctx, "SET %b %b", key.data(), key.size(), value.data(), value.size())
            : redisCommand(ctx, "GET %b", key.data(), key.size());
    lat.ns.push_back((steady::now() - s).count());
    freeReplyObject(r);
  }
  double secs = seconds_since(t0);
  redisFree(ctx);
  return {"hiredis sync loop", set ? "SET" : "GET", "1", n / secs, lat.pct(0.5), lat.pct(0.99), ""};
}

row hiredis_pipelined(int port, bool set, int n, const std::string& value) {
  constexpr int depth = 16;
  redisContext* ctx = redisConnect("127.0.0.1", port);
  latencies lat;
  auto t0 = steady::now();
  int done = 0;
  while (done < n) {
    auto s = steady::now();
    for (int j = 0; j < depth; ++j) {
      std::string key = key_of(static_cast<std::uint64_t>(done) + static_cast<std::uint64_t>(j));
      if (set) {
        redisAppendCommand(ctx, "SET %b %b", key.data(), key.size(), value.data(), value.size());
      } else {
        redisAppendCommand(ctx, "GET %b", key.data(), key.size());
      }
    }
    for (int j = 0; j < depth; ++j) {
      void* r = nullptr;
      redisGetReply(ctx, &r);
      freeReplyObject(r);
    }
    lat.ns.push_back((steady::now() - s).count());
    done += depth;
  }
  double secs = seconds_since(t0);
  redisFree(ctx);
  return {"hiredis sync pipelined x16",
          set ? "SET" : "GET",
          "1 (x16)",
          done / secs,
          lat.pct(0.5),
          lat.pct(0.99),
          "latency per batch of 16"};
}

row otpd_blocking(int port, bool set, int n, const std::string& value) {
  auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", port));
  latencies lat;
  lat.ns.reserve(static_cast<std::size_t>(n));
  auto t0 = steady::now();
  for (int i = 0; i < n; ++i) {
    std::string key = key_of(static_cast<std::uint64_t>(i));
    auto s = steady::now();
    auto r = set ? c->command({"SET", key, value}) : c->command({"GET", key});
    lat.ns.push_back((steady::now() - s).count());
    if (!r) {
      throw std::runtime_error("blocking_client: " + r.error().message());
    }
  }
  double secs = seconds_since(t0);
  return {"otpd blocking_client", set ? "SET" : "GET", "1", n / secs,
          lat.pct(0.5),           lat.pct(0.99),       ""};
}

// The async client, closed loop: `depth` requests in flight, each answer
// sends the next one, until n are answered.
row otpd_async(int port, bool set, int n, int depth, const std::string& value) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  latencies lat;
  lat.ns.reserve(static_cast<std::size_t>(n));
  int sent = 0;
  int answered = 0;
  int errors = 0;
  double secs = 0;
  {
    std::optional<std::error_code> up;
    rc::async_client::handlers h;
    h.on_connect = [&up](std::error_code ec) { up = ec; };
    rc::async_client::options o;
    o.request_timeout = std::chrono::seconds(10);
    auto c =
        rc::async_client::connect(&loop, rc::endpoint::tcp("127.0.0.1", port), o, std::move(h));
    while (!up) {
      uv_run(&loop, UV_RUN_ONCE);
    }
    if (*up) {
      throw std::runtime_error("async_client: unable to connect: " + up->message());
    }
    std::function<void()> send_one = [&] {
      std::string key = key_of(static_cast<std::uint64_t>(sent));
      ++sent;
      auto s = steady::now();
      auto cb = [&, s](const rc::reply_result& r) {
        lat.ns.push_back((steady::now() - s).count());
        ++answered;
        errors += r ? 0 : 1;
        if (sent < n) {
          send_one();
        }
      };
      if (set) {
        c.command({"SET", key, value}, cb);
      } else {
        c.command({"GET", key}, cb);
      }
    };
    auto t0 = steady::now();
    for (int i = 0; i < depth && sent < n; ++i) {
      send_one();
    }
    while (answered < n) {
      uv_run(&loop, UV_RUN_ONCE);
    }
    secs = seconds_since(t0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks
  uv_loop_close(&loop);
  if (errors > 0) {
    throw std::runtime_error(fmt::format("async_client: {} errors", errors));
  }
  return {"otpd async_client",
          set ? "SET" : "GET",
          std::to_string(depth),
          n / secs,
          lat.pct(0.5),
          lat.pct(0.99),
          ""};
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : line) {
    if (ch == '"') {
      continue;
    }
    if (ch == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (ch != '\n' && ch != '\r') {
      cur += ch;
    }
  }
  out.push_back(cur);
  return out;
}

// redis-benchmark -t set,get -d 100 -r 10000 -c C -n N --csv: the anchor.
std::vector<row> redis_benchmark(int port, int clients, int n, int pipeline) {
  std::string cmd = fmt::format(
      "redis-benchmark -h 127.0.0.1 -p {} -t set,get -d {} -r {} -c {} -n {} -P {} --csv "
      "2>/dev/null",
      port, value_size, keys_n, clients, n, pipeline);
  std::vector<row> rows;
  FILE* p = ::popen(cmd.c_str(), "re");
  if (p == nullptr) {
    return rows;
  }
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) {
    auto f = split_csv(buf);
    if (f.size() < 7 || (f[0] != "SET" && f[0] != "GET")) {
      continue;
    }
    row r;
    r.who = pipeline > 1 ? fmt::format("redis-benchmark -P {}", pipeline) : "redis-benchmark";
    r.op = f[0];
    r.concurrency = std::to_string(clients);
    r.ops_per_s = std::atof(f[1].c_str());
    r.p50_us = std::atof(f[4].c_str()) * 1000.0;
    r.p99_us = std::atof(f[6].c_str()) * 1000.0;
    r.note = pipeline > 1 ? "latency per pipelined request" : "";
    rows.push_back(r);
  }
  ::pclose(p);
  return rows;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"bench_redis: Redis clients vs hiredis and redis-benchmark"};
  double scale = 1.0;
  app.add_option("--scale", scale, "multiply every request count by this (default 1)");
  CLI11_PARSE(app, argc, argv);
  auto n = [scale](int base) { return std::max(1000, static_cast<int>(base * scale)); };

  try {
    server srv;
    const std::string value(value_size, 'x');
    preload(srv.port(), value);
    std::vector<row> rows;
    for (bool set : {true, false}) {
      rows.push_back(hiredis_sync(srv.port(), set, n(20000), value));
      rows.push_back(otpd_blocking(srv.port(), set, n(20000), value));
      rows.push_back(hiredis_pipelined(srv.port(), set, n(160000), value));
      rows.push_back(otpd_async(srv.port(), set, n(20000), 1, value));
      rows.push_back(otpd_async(srv.port(), set, n(100000), 8, value));
      rows.push_back(otpd_async(srv.port(), set, n(200000), 64, value));
    }
    for (auto [clients, count] :
         {std::pair{1, 20000}, std::pair{8, 100000}, std::pair{64, 200000}}) {
      for (auto& r : redis_benchmark(srv.port(), clients, n(count), 1)) {
        rows.push_back(r);
      }
    }
    for (auto& r : redis_benchmark(srv.port(), 1, n(160000), 16)) {
      rows.push_back(r);
    }

    std::printf("| client | op | in flight | ops/s | p50 µs | p99 µs | note |\n");
    std::printf("|---|---|---|---:|---:|---:|---|\n");
    for (const char* op : {"SET", "GET"}) {
      for (auto& r : rows) {
        if (r.op == op) {
          std::printf("| %s | %s | %s | %.0f | %.1f | %.1f | %s |\n", r.who.c_str(), r.op.c_str(),
                      r.concurrency.c_str(), r.ops_per_s, r.p50_us, r.p99_us, r.note.c_str());
        }
      }
    }
    for (const char* op : {"SET", "GET"}) {
      double ours = 0;
      double anchor = 0;
      for (auto& r : rows) {
        if (r.op == op && r.concurrency == "64") {
          (r.who == "otpd async_client" ? ours : anchor) = r.ops_per_s;
        }
      }
      if (anchor > 0) {
        std::printf("\n%s at 64 in flight: otpd async_client / redis-benchmark -c 64 = %.2f", op,
                    ours / anchor);
      }
    }
    std::printf("\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_redis: %s\n", e.what());
    return 111;
  }
  return 0;
} catch (...) {
  std::fprintf(stderr, "bench_redis: unexpected error\n");
  return 111;
}

// bench_redis: throughput and latency (p50/p99) of the Redis clients, with
// the anchors measured in the same run against the same redis-server:
// hiredis' synchronous loop (one command, and pipelined x16) and
// redis-benchmark at the same concurrency. GET and SET, 100-byte values,
// 10,000 keys, over loopback TCP. The pool columns come with the pool.
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <otpd/bench/support.hpp>
#include <otpd/core/cli.hpp>
#include <otpd/core/main.hpp>
#include <otpd/redis_client/async_client.hpp>
#include <otpd/redis_client/blocking_client.hpp>

namespace ob = otpd::bench;
namespace rc = otpd::redis_client;
using steady = std::chrono::steady_clock;

namespace {

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
  [[nodiscard]] ob::percentiles us() const { return ob::summarize_ns_as_us(ns); }
};

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

// hiredis' synchronous API directly: the floor for one connection.
row hiredis_sync(int port, bool set, int n, const std::string& value) {
  auto l = ob::hiredis_sync_loop(port, set, n, value);
  return {"hiredis sync loop", set ? "SET" : "GET", "1", l.ops_per_s, l.us.p50, l.us.p99, ""};
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
      std::string key =
          ob::redis_key(static_cast<std::uint64_t>(done) + static_cast<std::uint64_t>(j));
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
  auto us = lat.us();
  return {"hiredis sync pipelined x16", set ? "SET" : "GET", "1 (x16)", done / secs, us.p50, us.p99,
          "latency per batch of 16"};
}

row otpd_blocking(int port, bool set, int n, const std::string& value) {
  auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", port));
  latencies lat;
  lat.ns.reserve(static_cast<std::size_t>(n));
  auto t0 = steady::now();
  for (int i = 0; i < n; ++i) {
    std::string key = ob::redis_key(static_cast<std::uint64_t>(i));
    auto s = steady::now();
    auto r = set ? c->command({"SET", key, value}) : c->command({"GET", key});
    lat.ns.push_back((steady::now() - s).count());
    if (!r) {
      throw std::runtime_error("blocking_client: " + r.error().message());
    }
  }
  double secs = seconds_since(t0);
  auto us = lat.us();
  return {"otpd blocking_client", set ? "SET" : "GET", "1", n / secs, us.p50, us.p99, ""};
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
      std::string key = ob::redis_key(static_cast<std::uint64_t>(sent));
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
  auto us = lat.us();
  return {"otpd async_client",
          set ? "SET" : "GET",
          std::to_string(depth),
          n / secs,
          us.p50,
          us.p99,
          ""};
}

// redis-benchmark -t set,get -d 100 -r 10000 -c C -n N --csv: the anchor.
std::vector<row> redis_benchmark(int port, int clients, int n, int pipeline) {
  std::vector<row> rows;
  for (auto& b : ob::redis_benchmark(
           {.port = port, .clients = clients, .requests = n, .pipeline = pipeline})) {
    if (b.op != "SET" && b.op != "GET") {
      continue;
    }
    row r;
    r.who = pipeline > 1 ? fmt::format("redis-benchmark -P {}", pipeline) : "redis-benchmark";
    r.op = b.op;
    r.concurrency = std::to_string(clients);
    r.ops_per_s = b.ops_per_s;
    r.p50_us = b.p50_us;
    r.p99_us = b.p99_us;
    r.note = pipeline > 1 ? "latency per pipelined request" : "";
    rows.push_back(r);
  }
  return rows;
}

}  // namespace

int run(int argc, char** argv) {
  otpd::core::cli::app app{"bench_redis: Redis clients vs hiredis and redis-benchmark"};
  double scale = 1.0;
  app.add("--scale", scale, "multiply every request count by this (default 1)");
  if (auto rc = app.parse(argc, argv)) {
    return *rc;
  }
  auto n = [scale](int base) { return std::max(1000, static_cast<int>(base * scale)); };

  try {
    ob::redis_server srv;
    const std::string value(ob::redis_value_size, 'x');
    ob::redis_preload(srv.port(), value);
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
}

int main(int argc, char** argv) {
  return otpd::core::guarded_main(argc, argv, run);
}

#pragma once
// What every benchmark program needs beside its own measurements: a free
// loopback port, a redis-server of its own, a shell command's output,
// percentiles of a sample, and one way to end on an unexpected exception.
// Failures to set up an anchor are exceptions with a message naming what
// failed: a bench prints it and exits, or reports the anchor as skipped.

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::bench {

// A TCP port on 127.0.0.1 that nobody listened on a moment ago (bind port 0,
// read it back). Throws std::runtime_error when no socket can be bound.
[[nodiscard]] int free_port();

// True when `name` is found in PATH (an anchor program that may be missing).
[[nodiscard]] bool have_program(std::string_view name);

// Runs `cmd` with /bin/sh and returns what it wrote on stdout (empty when it
// could not be started).
[[nodiscard]] std::string run_capture(const std::string& cmd);

// The directory of the running program (build/bin): where the helper
// programs a bench starts are built.
[[nodiscard]] std::string program_dir();

// The scratch directory of core (mkdtemp, removed on destruction).
using temp_dir = core::temp_dir;

// One redis-server of our own: a free loopback port, a private directory
// (log and socket there), no persistence. The constructor returns once the
// server answers PING; the destructor stops it (SIGTERM, SIGKILL after a
// deadline), reaps it through its pidfd and removes the directory.
class redis_server {
 public:
  struct options {
    std::chrono::milliseconds start_timeout{10000};
    std::chrono::milliseconds stop_timeout{5000};
  };
  redis_server() : redis_server(options{}) {}
  explicit redis_server(const options& o);
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  redis_server(redis_server&&) = delete;
  redis_server& operator=(redis_server&&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const std::string& dir() const { return dir_.path(); }

 private:
  void stop() noexcept;

  options options_;
  temp_dir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  core::unique_fd pidfd_;
};

// The workload of the Redis benches: 10,000 keys "key:<12 digits>", 100-byte
// values.
inline constexpr int redis_keys = 10000;
inline constexpr std::size_t redis_value_size = 100;
// The key of i (taken modulo redis_keys).
[[nodiscard]] std::string redis_key(std::uint64_t i);
// SETs every key to `value`, pipelined, so that the GETs find them.
// Throws std::runtime_error when the server cannot be reached.
void redis_preload(int port, const std::string& value);

// One line of `redis-benchmark --csv`: requests per second and latency.
struct redis_benchmark_row {
  std::string op;  // "SET", "GET"
  double ops_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
};

struct redis_benchmark_options {
  int port = 0;
  std::string tests = "set,get";              // -t
  int clients = 1;                            // -c
  int requests = 100000;                      // -n
  int pipeline = 1;                           // -P
  int keyspace = redis_keys;                  // -r
  std::size_t value_size = redis_value_size;  // -d
};

// Runs redis-benchmark on 127.0.0.1 and parses its CSV; the rows of the
// tests it printed (none when it is missing or failed).
[[nodiscard]] std::vector<redis_benchmark_row> redis_benchmark(const redis_benchmark_options& o);

// Nearest-rank percentiles of a sample, in the sample's unit.
struct percentiles {
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  std::size_t n = 0;
};
[[nodiscard]] percentiles summarize(std::vector<double> sample);
// The same for nanosecond durations, reported in microseconds.
[[nodiscard]] percentiles summarize_ns_as_us(const std::vector<std::int64_t>& ns);

// One measured loop: throughput and the latency of each request.
struct loop_result {
  double ops_per_s = 0;
  percentiles us;  // latency of each request, µs
};
// hiredis' synchronous API on one connection, one command at a time (SET or
// GET of redis_key(0..n-1)): the floor both Redis benches print.
// Throws std::runtime_error when the server cannot be reached.
[[nodiscard]] loop_result hiredis_sync_loop(int port, bool set, int n, const std::string& value);

}  // namespace otpd::bench

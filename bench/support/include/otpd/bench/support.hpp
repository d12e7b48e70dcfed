#pragma once
// What every benchmark program needs beside its own measurements: a
// redis-server of its own, a shell command's output, redis-benchmark and
// hiredis anchors, and percentiles of a sample.
// Failures to set up an anchor are exceptions with a message naming what
// failed: a bench prints it and exits, or reports the anchor as skipped.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/testing/redis_server.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::bench {

// The scratch directory, PATH and shell helpers and the redis-server
// launcher are the tests' GoogleTest-free ones (otpd::test_util): one of
// each for tests and benches.
using testing::temp_dir;

// True when `name` is found in PATH (an anchor program that may be missing).
[[nodiscard]] inline bool have_program(std::string_view name) {
  return !testing::find_program(name).empty();
}

// Runs `cmd` with /bin/sh and returns what it wrote on stdout (empty when it
// could not be started).
[[nodiscard]] inline std::string run_capture(const std::string& cmd) {
  return testing::sh_output(cmd);
}

// The directory of the running program (build/bin, or $OTPD_BIN_DIR): where
// the helper programs a bench starts are built.
[[nodiscard]] inline std::string program_dir() {
  return testing::bin_dir();
}

// testing::redis_server (a free loopback port, a private directory, no
// persistence, stopped and reaped through its pidfd) whose constructor
// throws std::runtime_error with the reason when the server cannot start:
// a bench has nothing to measure without it.
class redis_server : public testing::redis_server {
 public:
  redis_server() {
    if (!running()) {
      throw std::runtime_error(error());
    }
  }
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

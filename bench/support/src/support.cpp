#include "otpd/bench/support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/spawn.hpp>

namespace otpd::bench {

int free_port() {
  core::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("unable to find a free port");
  }
  return ntohs(a.sin_port);
}

bool have_program(std::string_view name) {
  std::string cmd = fmt::format("command -v '{}' >/dev/null 2>&1", name);
  return std::system(cmd.c_str()) == 0;
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  // Whatever the bench printed so far goes out before the child's output.
  std::fflush(stdout);
  FILE* p = ::popen(cmd.c_str(), "re");
  if (p == nullptr) {
    return out;
  }
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  ::pclose(p);
  return out;
}

std::string program_dir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

namespace {

bool answers_ping(int port) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  bool up = false;
  if (c != nullptr && c->err == 0) {
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    up = r != nullptr && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
  }
  redisFree(c);
  return up;
}

}  // namespace

redis_server::redis_server(const options& o) : options_(o), dir_("otpd-bench-redis") {
  port_ = free_port();
  core::spawn_options so;
  so.argv = {"redis-server",
             "--port",
             std::to_string(port_),
             "--bind",
             "127.0.0.1",
             "--dir",
             dir(),
             "--save",
             "",
             "--appendonly",
             "no",
             "--logfile",
             dir() + "/redis.log",
             "--unixsocket",
             dir() + "/redis.sock"};
  so.fds = {{-1, 0}};
  auto child = core::spawn(so);
  if (!child) {
    throw std::runtime_error("unable to start redis-server (is it installed?): " +
                             child.error().message());
  }
  pid_ = child->pid;
  pidfd_ = std::move(child->pidfd);
  auto until = core::deadline::after(options_.start_timeout);
  while (!until.expired()) {
    if (answers_ping(port_)) {
      return;
    }
    if (core::try_reap(pidfd_.get())) {
      pid_ = -1;
      // The directory goes with this object: quote the log's end instead.
      std::string log = run_capture("tail -n 3 '" + dir() + "/redis.log' 2>/dev/null");
      throw std::runtime_error("redis-server exited at start: " +
                               (log.empty() ? std::string("(nothing in its log)") : log));
    }
    ::usleep(10000);  // start-up poll of a program we do not control
  }
  stop();
  throw std::runtime_error(
      fmt::format("redis-server did not answer PING within {} ms", options_.start_timeout.count()));
}

redis_server::~redis_server() {
  stop();
}

void redis_server::stop() noexcept {
  if (pid_ <= 0) {
    return;
  }
  // The pidfd keeps the pid ours until we reap it: no signal to a stranger.
  auto stopped = core::kill_and_reap(pid_, SIGTERM, core::deadline::after(options_.stop_timeout),
                                     pidfd_.get());
  if (stopped.killed) {
    std::fprintf(stderr, "redis-server on port %d ignored SIGTERM for %lld ms; killed it\n", port_,
                 static_cast<long long>(options_.stop_timeout.count()));
  }
  pid_ = -1;
}

namespace {

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

}  // namespace

std::vector<redis_benchmark_row> redis_benchmark(const redis_benchmark_options& o) {
  std::string text = run_capture(fmt::format(
      "redis-benchmark -h 127.0.0.1 -p {} -t {} -d {} -r {} -c {} -n {} -P {} --csv 2>/dev/null",
      o.port, o.tests, o.value_size, o.keyspace, o.clients, o.requests, o.pipeline));
  std::vector<redis_benchmark_row> rows;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = std::min(text.find('\n', pos), text.size());
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
    // "p95_latency_ms","p99_latency_ms","max_latency_ms"
    auto f = split_csv(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (f.size() < 7 || f[0] == "test") {
      continue;
    }
    rows.push_back({f[0], std::atof(f[1].c_str()), std::atof(f[4].c_str()) * 1000.0,
                    std::atof(f[6].c_str()) * 1000.0});
  }
  return rows;
}

std::string redis_key(std::uint64_t i) {
  return fmt::format("key:{:012}", i % redis_keys);
}

namespace {

// One hiredis connection, freed with the object.
struct hiredis_connection {
  explicit hiredis_connection(int port) : ctx(redisConnect("127.0.0.1", port)) {
    if (ctx == nullptr || ctx->err != 0) {
      throw std::runtime_error(fmt::format("unable to connect to redis-server on port {}: {}", port,
                                           ctx != nullptr ? ctx->errstr : "out of memory"));
    }
  }
  ~hiredis_connection() { redisFree(ctx); }
  hiredis_connection(const hiredis_connection&) = delete;
  hiredis_connection& operator=(const hiredis_connection&) = delete;
  hiredis_connection(hiredis_connection&&) = delete;
  hiredis_connection& operator=(hiredis_connection&&) = delete;
  redisContext* ctx;
};

}  // namespace

void redis_preload(int port, const std::string& value) {
  hiredis_connection c(port);
  for (int i = 0; i < redis_keys; ++i) {
    std::string k = redis_key(static_cast<std::uint64_t>(i));
    redisAppendCommand(c.ctx, "SET %b %b", k.data(), k.size(), value.data(), value.size());
  }
  for (int i = 0; i < redis_keys; ++i) {
    void* r = nullptr;
    if (redisGetReply(c.ctx, &r) != REDIS_OK) {
      throw std::runtime_error(std::string("redis preload: ") + c.ctx->errstr);
    }
    freeReplyObject(r);
  }
}

loop_result hiredis_sync_loop(int port, bool set, int n, const std::string& value) {
  hiredis_connection c(port);
  std::vector<std::int64_t> ns;
  ns.reserve(static_cast<std::size_t>(n));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    std::string key = redis_key(static_cast<std::uint64_t>(i));
    auto s = std::chrono::steady_clock::now();
    void* r =
        set ? redisCommand(c.ctx, "SET %b %b", key.data(), key.size(), value.data(), value.size())
            : redisCommand(c.ctx, "GET %b", key.data(), key.size());
    ns.push_back((std::chrono::steady_clock::now() - s).count());
    freeReplyObject(r);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {n / secs, summarize_ns_as_us(ns)};
}

percentiles summarize(std::vector<double> sample) {
  percentiles p;
  p.n = sample.size();
  if (sample.empty()) {
    return p;
  }
  std::sort(sample.begin(), sample.end());
  auto at = [&](double q) {
    auto i = static_cast<std::size_t>(q * static_cast<double>(sample.size() - 1) + 0.5);
    return sample[std::min(i, sample.size() - 1)];
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  return p;
}

percentiles summarize_ns_as_us(const std::vector<std::int64_t>& ns) {
  std::vector<double> us;
  us.reserve(ns.size());
  for (auto v : ns) {
    us.push_back(static_cast<double>(v) / 1000.0);
  }
  return summarize(std::move(us));
}

}  // namespace otpd::bench

// redis_worker: one member of an otpd Redis pool. Owns one connection to
// Redis and serves Redis commands sent as GenServer calls by pool clients
// (see redis_pool/include/otpd/redis_pool/{worker,codec}.hpp).
//
//   redis_worker --redis 127.0.0.1:6379 --pool redis --index 0 --size 4
//   redis_worker --unix /run/redis.sock --pool cache --index 1 --size 2
//
// The endpoint may also come from $OTPD_REDIS ("host:port" or "unix:/path").
#include <cstdio>
#include <cstdlib>
#include <string>

#include <otpd/core/cli.hpp>
#include <otpd/core/log.hpp>
#include <otpd/redis_pool/facts.hpp>
#include <otpd/redis_pool/worker.hpp>

namespace rp = otpd::redis_pool;

namespace {

bool parse_endpoint(const std::string& s, otpd::redis_client::endpoint& out) {
  if (s.rfind("unix:", 0) == 0) {
    out = otpd::redis_client::endpoint::unix_socket(s.substr(5));
    return s.size() > 5;
  }
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return false;
  }
  char* end = nullptr;
  long port = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port <= 0 || port > 65535) {
    return false;
  }
  out = otpd::redis_client::endpoint::tcp(s.substr(0, colon), static_cast<int>(port));
  return true;
}

}  // namespace

int main(int argc, char** argv) try {
  otpd::core::cli::app app{"A Redis pool worker: one Redis connection behind a mailbox."};
  rp::worker_options o;
  const char* env = std::getenv("OTPD_REDIS");
  std::string redis = env != nullptr ? env : "127.0.0.1:6379";
  std::string unix_path;
  unsigned timeout_ms = 1000;
  unsigned connect_ms = 1000;
  unsigned health_ms = 0;
  unsigned spin_us = 0;
  app.add("--redis", redis, "host:port (numeric host) or unix:/path; default $OTPD_REDIS");
  app.add("--unix", unix_path, "Unix socket path of Redis (wins over --redis)");
  app.add("--pool", o.pool, "pool name ([A-Za-z0-9_-], registers <pool>.<index>)");
  app.add("--index", o.index, "this member's index in the pool");
  app.add("--size", o.size, "number of members of the pool");
  app.add("--node", o.node, "node of the persistent_term store (default $OTPD_NODE)");
  app.add("--timeout-ms", timeout_ms, "deadline of each Redis command");
  app.add("--connect-timeout-ms", connect_ms, "bound on each connect attempt");
  app.add("--health-ms", health_ms, "PING a connection idle this long (0: never)");
  app.add("--spin-us", spin_us, "poll this long after activity before sleeping (0: off)");
  app.add("--max-in-flight", o.max_in_flight, "bound on the pipeline (0: none)");
  app.flag("--wait-connected", o.wait_connected, "report ready only once Redis answers");
  app.add("--password", o.password, "AUTH on every connect");
  app.add("--db", o.database, "SELECT on every connect");
  if (auto rc = app.parse(argc, argv)) {
    return *rc;
  }

  otpd::core::set_log_name(rp::member_name(o.pool, o.index));
  if (!unix_path.empty()) {
    o.where = otpd::redis_client::endpoint::unix_socket(unix_path);
  } else if (!parse_endpoint(redis, o.where)) {
    otpd::core::log_error("bad --redis '{}': expected host:port or unix:/path", redis);
    return 100;
  }
  if (!rp::valid_pool_name(o.pool) || o.size == 0 || o.index >= o.size) {
    otpd::core::log_error("bad --pool, --index or --size ({} {} of {})", o.pool, o.index, o.size);
    return 100;
  }
  o.request_timeout = std::chrono::milliseconds(timeout_ms);
  o.connect_timeout = std::chrono::milliseconds(connect_ms);
  o.health_interval = std::chrono::milliseconds(health_ms);
  o.spin = std::chrono::microseconds(spin_us);
  return rp::run_worker(o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s: %s\n", "redis_worker", e.what());
  return 111;
}

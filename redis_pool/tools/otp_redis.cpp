// otp-redis POOL CMD ARGS...: one command through a Redis pool of this node,
// printed the way redis-cli prints it.
//
// Exit status: 0 for a reply, 1 for a Redis error reply, 100 for a usage
// error, 111 when the pool is unreachable (no facts, no worker, the worker
// died, Redis down behind it, or no answer in time).
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <otpd/core/cli.hpp>
#include <otpd/redis_pool/pool_client.hpp>

namespace rp = otpd::redis_pool;

int main(int argc, char** argv) try {
  otpd::core::cli::app app{"Send one Redis command through an otpd Redis pool."};
  rp::pool_options o;
  std::string strat = "random";
  unsigned timeout_ms = 2000;
  std::string runtime_dir;
  app.add("--node", o.node, "node of the pool's facts (default $OTPD_NODE or 'default')");
  app.add("--size", o.size_if_unpublished,
          "members <pool>.0 .. <pool>.N-1 when no facts are published");
  app.add("--strategy", strat, "random | round_robin | least_outstanding");
  app.add("--timeout-ms", timeout_ms, "bound on the call");
  app.add("--runtime-dir", runtime_dir, "the node's runtime dir (default $OTPD_RUNTIME_DIR)");
  app.add("pool", o.pool, "the pool's name").required();
  app.prefix_command();
  if (auto rc = app.parse(argc, argv)) {
    return *rc == 0 ? 0 : 100;
  }
  std::vector<std::string> cmd = app.remaining();
  auto s = rp::strategy_from(strat);
  if (cmd.empty() || !s) {
    std::fprintf(stderr, "otp-redis: usage: otp-redis [options] POOL CMD [ARGS...]\n");
    return 100;
  }
  o.strategy = *s;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  if (!runtime_dir.empty()) {
    if (auto i = otpd::runtime::init({.runtime_dir = runtime_dir, .name = {}}); !i) {
      std::fprintf(stderr, "otp-redis: unable to open a mailbox in %s: %s\n", runtime_dir.c_str(),
                   i.error().message().c_str());
      return 111;
    }
  }
  auto c = rp::pool_client::open(o);
  if (!c) {
    std::fprintf(stderr, "otp-redis: unable to find pool %s: %s\n", o.pool.c_str(),
                 c.error().message().c_str());
    return 111;
  }
  auto r = c->command(cmd);
  if (!r) {
    std::fprintf(stderr, "otp-redis: pool %s: %s\n", o.pool.c_str(), r.error().message().c_str());
    return 111;
  }
  std::string out = r->to_string();
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fputc('\n', stdout);
  return r->is_error() ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s: %s\n", "otp-redis", e.what());
  return 111;
}

// The pool as a supervised subtree of a real otpd: workers killed from a
// shell under load, restarts observed through otpctl status --json.
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/redis_pool/facts.hpp>
#include <otpd/redis_pool/pool_client.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/testing/otpd_node.hpp>
#include <otpd/testing/redis_server.hpp>
#include <otpd/testing/runtime_session.hpp>

namespace otpd::redis_pool {
namespace {

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using core::errc;
using namespace std::chrono_literals;

std::string worker_yaml(unsigned i, unsigned size, int port) {
  return fmt::format(
      "        - id: w{0}\n"
      "          name: p.{0}\n"
      "          command: [{1}, --redis, \"127.0.0.1:{2}\", --pool, p, --index, \"{0}\", --size, "
      "\"{3}\", --timeout-ms, \"60000\", --wait-connected]\n"
      "          readiness: notify\n",
      i, t::bin_path("redis_worker"), port, size);
}

TEST(SupervisedPool, KilledWorkerFailsOnlyItsCallsAndComesBackUnderItsName) {
  t::redis_server redis;
  ASSERT_TRUE(redis.running()) << redis.error();
  itest::otpd_node n;
  std::string node = fmt::format("supool{}", ::getpid());
  // The store outlives the workers (by design): remove it however the test ends.
  std::unique_ptr<std::string, void (*)(std::string*)> cleanup(
      &node, [](std::string* nd) { (void)shm_table::persistent_term::remove(*nd); });
  std::string yaml = fmt::format(
      "node:\n  name: {}\nsupervisor:\n  strategy: one_for_one\n  max_restarts: 10\n"
      "  max_seconds: 10\n  children:\n    - id: pool\n      strategy: one_for_one\n"
      "      max_restarts: 10\n      max_seconds: 10\n      children:\n{}{}",
      node, worker_yaml(0, 2, redis.port()), worker_yaml(1, 2, redis.port()));
  n.start(yaml);
  pid_t w0 = n.wait_running("pool/w0");
  pid_t w1 = n.wait_running("pool/w1");
  ASSERT_GT(w0, 0) << n.log();
  ASSERT_GT(w1, 0) << n.log();

  t::runtime_session session(n.rt());
  ASSERT_TRUE(session.ok()) << session.error().message();
  pool_options o;
  o.pool = "p";
  o.node = node;
  o.strategy = strategy::round_robin;
  o.timeout = t::scaled(10s);
  auto c = pool_client::open(o);
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ(c->members()[0].pid, w0);
  EXPECT_EQ(c->members()[1].pid, w1);
  std::set<std::int64_t> ids;
  for (int i = 0; i < 200; ++i) {
    ids.insert(c->command({"CLIENT", "ID"}).value().integer);
  }
  EXPECT_EQ(ids.size(), 2u);

  // Load on both; worker 0's calls queue behind a BLPOP, so they are in
  // flight in its connection when it is killed.
  std::vector<pool_client::pending> zero;
  std::vector<pool_client::pending> one;
  zero.push_back(c->send_to(0, {"BLPOP", "nothing", "50"}).value());
  for (int i = 0; i < 50; ++i) {
    zero.push_back(c->send_to(0, {"SET", fmt::format("k{}", i), "v"}).value());
    one.push_back(c->send_to(1, {"INCR", "n1"}).value());
  }
  ASSERT_TRUE(rt::flush());
  ASSERT_TRUE(t::wait_until([&] {
    return t::sh_output(fmt::format("redis-cli -p {} CLIENT LIST", redis.port()))
               .find("cmd=blpop") != std::string::npos;
  }));
  itest::shell_kill(w0, "9");
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(c->await(one[i]).value().integer, static_cast<std::int64_t>(i) + 1);
  }
  for (const auto& p : zero) {
    auto r = c->await(p);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::crashed);
  }

  // Keep calling through the same client while otpd restarts worker 0: only
  // worker 0's calls may fail (noproc/crashed while it is down), worker 1's never.
  int failed0 = 0;
  bool back = t::wait_until([&] {
    auto r1 = c->command_on(1, {"PING"});
    EXPECT_TRUE(r1) << r1.error().message();
    auto r0 = c->command_on(0, {"PING"});
    if (!r0) {
      ++failed0;
      EXPECT_TRUE(r0.error() == errc::noproc || r0.error() == errc::crashed)
          << r0.error().message();
    }
    return r0.has_value();
  });
  ASSERT_TRUE(back) << n.log();
  pid_t w0b = n.wait_running("pool/w0", w0);
  ASSERT_GT(w0b, 0);
  EXPECT_EQ(n.pid_of("pool/w1"), w1);
  EXPECT_EQ(c->members()[0].pid, w0b);  // republished facts, read by the client
  ids.clear();
  for (int i = 0; i < 200; ++i) {
    auto r = c->command({"CLIENT", "ID"});
    ASSERT_TRUE(r) << r.error().message();
    ids.insert(r->integer);
  }
  EXPECT_EQ(ids.size(), 2u);
}

TEST(SupervisedPool, ShippedConfigIsValid) {
  int st = 0;
  std::string out =
      t::sh_output(fmt::format("PATH={}:$PATH {} --check {} 2>&1", t::shell_quote(t::bin_dir()),
                               t::shell_quote(t::bin_path("otpd")),
                               t::shell_quote(OTPD_SOURCE_DIR "/configs/redis_pool.yaml")),
                   &st);
  EXPECT_EQ(WEXITSTATUS(st), 0) << out;
}

}  // namespace
}  // namespace otpd::redis_pool

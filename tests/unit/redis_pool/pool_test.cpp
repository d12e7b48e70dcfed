// pool_client against real redis_worker processes (spawned by the test) and
// a real redis-server on a free port.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/redis_pool/facts.hpp>
#include <otpd/redis_pool/pool_client.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/testing/redis_server.hpp>
#include <otpd/testing/runtime_session.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::redis_pool {
namespace {

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using core::errc;
using namespace std::chrono_literals;
using redis_client::reply;

class Pool : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.running()) << redis_.error();
    node_ = fmt::format("pooltest{}", ::getpid());
    ::setenv("OTPD_NODE", node_.c_str(), 1);
    ASSERT_TRUE(runtime_.ok()) << runtime_.error().message();
  }
  void TearDown() override {
    for (pid_t pid : workers_) {
      stop_worker(pid);
    }
    (void)shm_table::persistent_term::remove(node_);
  }

  // With --wait-connected by default: ready means Redis answered, so the
  // first command cannot race the connect.
  pid_t start_worker(unsigned index, unsigned size, std::vector<std::string> extra = {},
                     bool wait_connected = true) {
    std::vector<std::string> argv = {t::bin_path("redis_worker"),
                                     "--redis",
                                     fmt::format("127.0.0.1:{}", redis_.port()),
                                     "--pool",
                                     "p",
                                     "--index",
                                     std::to_string(index),
                                     "--size",
                                     std::to_string(size)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (wait_connected) {
      argv.emplace_back("--wait-connected");
    }
    rt::exec_options o;
    o.wait_ready = true;
    o.ready_timeout = t::scaled(10s);
    auto p = rt::spawn_exec(argv, o);
    EXPECT_TRUE(p) << p.error().message();
    if (!p) {
      return -1;
    }
    workers_.push_back(p->pid);
    return p->pid;
  }
  // SIGTERM and wait for the DOWN; returns its reason.
  core::exit_reason stop_worker(pid_t pid) {
    auto mon = rt::monitor(pid);
    (void)rt::kill(pid, SIGTERM);
    auto m = rt::receive_ref(mon, core::deadline::after(t::scaled(10s)));
    EXPECT_TRUE(m) << "worker " << pid << " did not stop";
    std::erase(workers_, pid);
    return m ? m->reason() : core::exit_reason{core::exit_kind::unknown, 0};
  }
  pool_client open(strategy s = strategy::random) {
    pool_options o;
    o.pool = "p";
    o.strategy = s;
    o.timeout = t::scaled(5s);
    auto c = pool_client::open(o);
    EXPECT_TRUE(c) << c.error().message();
    return std::move(*c);
  }

  t::redis_server redis_;
  t::temp_dir dir_{"otpd-pool"};
  t::runtime_session runtime_{dir_.path() + "/rt"};
  std::string node_;
  std::vector<pid_t> workers_;
};

TEST_F(Pool, CommandsRouteToBothWorkersWithEveryStrategy) {
  start_worker(0, 2);
  start_worker(1, 2);
  for (auto s : {strategy::random, strategy::round_robin, strategy::least_outstanding}) {
    auto c = open(s);
    ASSERT_EQ(c.size(), 2u);
    std::set<std::int64_t> ids;
    for (int i = 0; i < 200; ++i) {
      auto r = c.command({"CLIENT", "ID"});
      ASSERT_TRUE(r) << r.error().message();
      ASSERT_TRUE(r->is_integer());
      ids.insert(r->integer);
    }
    EXPECT_EQ(ids.size(), 2u) << to_string(s);
  }
}

TEST_F(Pool, LeastOutstandingAvoidsABusyWorker) {
  start_worker(0, 2, {"--timeout-ms", "60000"});
  start_worker(1, 2);
  auto c = open(strategy::least_outstanding);
  auto id1 = c.command_on(1, {"CLIENT", "ID"}).value().integer;
  // A call held in Redis keeps worker 0 busy for this client.
  auto blocked = c.send_to(0, {"BLPOP", "nothing", "0"});
  ASSERT_TRUE(blocked);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(c.command({"CLIENT", "ID"}).value().integer, id1);
  }
  ASSERT_TRUE(c.command_on(1, {"RPUSH", "nothing", "x"}));
  auto r = c.await(*blocked);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, reply::array({reply::bulk("nothing"), reply::bulk("x")}));
}

TEST_F(Pool, IdleWorkersSendHealthPings) {
  start_worker(0, 1, {"--health-ms", "20"});
  auto pings = [&] {
    auto info = t::sh_output(fmt::format("redis-cli -p {} INFO commandstats", redis_.port()));
    auto at = info.find("cmdstat_ping:calls=");
    return at == std::string::npos ? 0 : std::atoi(info.c_str() + at + 19);
  };
  int before = pings();
  // Nothing but the health timer sends PINGs now.
  EXPECT_TRUE(t::wait_until([&] { return pings() >= before + 3; }));
}

TEST_F(Pool, FactsArePublishedInThePersistentTermStore) {
  pid_t w0 = start_worker(0, 2);
  pid_t w1 = start_worker(1, 2);
  auto store = shm_table::persistent_term::open(node_);
  ASSERT_TRUE(store);
  auto f = read_facts(*store, "p");
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->size, 2u);
  EXPECT_EQ(f->members[0].name, "p.0");
  EXPECT_EQ(f->members[0].pid, w0);
  EXPECT_EQ(f->members[1].name, "p.1");
  EXPECT_EQ(f->members[1].pid, w1);
  EXPECT_EQ(rt::whereis("p.1").value_or(0), w1);
  EXPECT_EQ(read_facts(*store, "other").error(), errc::not_found);
}

TEST_F(Pool, EveryReplyTypeRoundTrips) {
  start_worker(0, 1);
  auto c = open();
  std::string bin("a\0b\r\nc\0", 7);
  EXPECT_EQ(c.command({"SET", "bin", bin}).value(), reply::status("OK"));
  EXPECT_EQ(c.command({"GET", "bin"}).value(), reply::bulk(bin));
  EXPECT_EQ(c.command({"GET", "missing"}).value(), reply::nil());
  EXPECT_EQ(c.command({"INCRBY", "n", "-5"}).value(), reply::of_integer(-5));
  auto wrong = c.command({"INCR", "bin"});
  ASSERT_TRUE(wrong);
  EXPECT_TRUE(wrong->is_error());
  EXPECT_EQ(c.command({"LPUSH", "bin", "x"}).value().str.rfind("WRONGTYPE", 0), 0u);
  auto nested =
      c.command({"EVAL", "return {1, {'a', {'b', false}}, redis.status_reply('FINE')}", "0"});
  ASSERT_TRUE(nested) << nested.error().message();
  EXPECT_EQ(*nested, reply::array({reply::of_integer(1),
                                   reply::array({reply::bulk("a"),
                                                 reply::array({reply::bulk("b"), reply::nil()})}),
                                   reply::status("FINE")}));
  std::string mib(1 << 20, '\0');
  for (std::size_t i = 0; i < mib.size(); ++i) {
    mib[i] = static_cast<char>(i * 7);
  }
  EXPECT_EQ(c.command({"SET", "big", mib}).value(), reply::status("OK"));
  EXPECT_EQ(c.command({"GET", "big"}).value(), reply::bulk(mib));
}

TEST_F(Pool, PipelinedCallsAreAnsweredInOrder) {
  start_worker(0, 2);
  start_worker(1, 2);
  auto c = open(strategy::round_robin);
  // Many calls in flight to one worker: Redis answers them in order.
  std::vector<pool_client::pending> ps;
  for (int i = 0; i < 2000; ++i) {
    auto p = c.send_to(0, {"INCR", "ordered"});
    ASSERT_TRUE(p) << p.error().message();
    ps.push_back(*p);
  }
  EXPECT_EQ(c.outstanding(0), 2000u);
  for (int i = 0; i < 2000; ++i) {
    EXPECT_EQ(c.await(ps[i]).value(), reply::of_integer(i + 1));
  }
  EXPECT_EQ(c.outstanding(0), 0u);
  // Spread over both workers, collected in order.
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 1000; ++i) {
    cmds.push_back({"INCR", "spread"});
  }
  auto rs = c.pipeline(cmds);
  ASSERT_EQ(rs.size(), 1000u);
  for (const auto& r : rs) {
    ASSERT_TRUE(r) << r.error().message();
  }
  EXPECT_EQ(c.command({"GET", "spread"}).value(), reply::bulk("1000"));
  // await_any takes answers as they come.
  std::vector<pool_client::pending> two = {c.send_to(0, {"PING"}).value(),
                                           c.send_to(1, {"ECHO", "x"}).value()};
  redis_client::reply_result got = errc::timeout;
  std::set<std::size_t> seen;
  for (int i = 0; i < 2; ++i) {
    auto k = c.await_any(two, core::deadline::after(t::scaled(5s)), &got);
    ASSERT_TRUE(k);
    ASSERT_TRUE(got);
    seen.insert(*k);
    two[*k].id.ref = {};  // answered: no longer matches anything
  }
  EXPECT_EQ(seen.size(), 2u);
}

TEST_F(Pool, RedisDownFailsFastAndServesAgainWhenBack) {
  start_worker(0, 2, {"--timeout-ms", "60000"});
  start_worker(1, 2, {"--timeout-ms", "60000"});
  auto c = open(strategy::round_robin);
  ASSERT_TRUE(c.command({"SET", "k", "v"}));
  redis_.kill();
  // Every call gets disconnected (not a timeout: the deadline is a minute),
  // from both workers, once they have seen the connection drop.
  ASSERT_TRUE(t::wait_until([&] {
    auto a = c.command_on(0, {"GET", "k"});
    auto b = c.command_on(1, {"GET", "k"});
    return !a && a.error() == errc::disconnected && !b && b.error() == errc::disconnected;
  }));
  for (int i = 0; i < 50; ++i) {
    auto r = c.command({"GET", "k"});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::disconnected);
  }
  ASSERT_TRUE(redis_.start()) << redis_.error();
  ASSERT_TRUE(t::wait_until([&] {
    return c.command_on(0, {"PING"}).has_value() && c.command_on(1, {"PING"}).has_value();
  }));
}

TEST_F(Pool, WorkerIsReadyWithRedisDownAndFailsFast) {
  redis_.kill();
  start_worker(0, 1, {"--timeout-ms", "60000"}, false);
  auto c = open();
  auto r = c.command({"PING"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::disconnected);
  ASSERT_TRUE(redis_.start()) << redis_.error();
  ASSERT_TRUE(t::wait_until([&] { return c.command({"PING"}).has_value(); }));
}

TEST_F(Pool, SigtermLetsCallsInFlightFinishThenExitsNormally) {
  pid_t w = start_worker(0, 1, {"--timeout-ms", "60000"});
  auto c = open();
  // BLPOP holds the call in Redis for a second; SIGTERM arrives meanwhile.
  auto p = c.send_to(0, {"BLPOP", "nothing", "1"});
  ASSERT_TRUE(p);
  ASSERT_TRUE(rt::flush());
  ASSERT_TRUE(t::wait_until([&] {
    auto info = t::sh_output(fmt::format("redis-cli -p {} CLIENT LIST", redis_.port()));
    return info.find("cmd=blpop") != std::string::npos;
  }));
  auto mon = rt::monitor(w);
  ASSERT_TRUE(rt::kill(w, SIGTERM));
  EXPECT_EQ(c.await(*p).value(), reply::nil());
  auto down = rt::receive_ref(mon, core::deadline::after(t::scaled(10s)));
  ASSERT_TRUE(down);
  EXPECT_EQ(down->reason(), core::exit_reason::code(0));
  std::erase(workers_, w);
  auto after = c.command({"PING"});
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error(), errc::noproc);
}

TEST_F(Pool, KilledWorkerFailsOnlyItsOwnCallsAtOnce) {
  pid_t w0 = start_worker(0, 2, {"--timeout-ms", "60000"});
  start_worker(1, 2, {"--timeout-ms", "60000"});
  auto c = open();
  // Calls to worker 0 queue behind a BLPOP in its connection: truly in flight.
  std::vector<pool_client::pending> zero;
  std::vector<pool_client::pending> one;
  zero.push_back(c.send_to(0, {"BLPOP", "nothing", "50"}).value());
  for (int i = 0; i < 20; ++i) {
    zero.push_back(c.send_to(0, {"GET", "k"}).value());
    one.push_back(c.send_to(1, {"INCR", "k1"}).value());
  }
  ASSERT_TRUE(rt::flush());
  ASSERT_TRUE(t::wait_until([&] {
    auto info = t::sh_output(fmt::format("redis-cli -p {} CLIENT LIST", redis_.port()));
    return info.find("cmd=blpop") != std::string::npos;
  }));
  ASSERT_GT(w0, 0);  // never `kill -9 -1`
  ASSERT_EQ(t::sh(fmt::format("kill -9 {}", w0)), 0);
  std::erase(workers_, w0);
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(c.await(one[i]).value(), reply::of_integer(static_cast<std::int64_t>(i) + 1));
  }
  for (const auto& p : zero) {
    auto r = c.await(p);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::crashed);
  }
  // Nothing restarts it here (no supervisor): calls to it fail at once.
  auto r = c.command_on(0, {"PING"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::noproc);
  EXPECT_TRUE(c.command_on(1, {"PING"}));
}

TEST_F(Pool, OtpRedisPrintsRepliesLikeRedisCli) {
  start_worker(0, 1);
  auto tool = [&](const std::string& args, int* code) {
    int st = 0;
    std::string out =
        t::sh_output(fmt::format("OTPD_RUNTIME_DIR={}/rt OTPD_NODE={} {} {} 2>&1", dir_.path(),
                                 node_, t::shell_quote(t::bin_path("otp-redis")), args),
                     &st);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
  };
  int code = -1;
  EXPECT_EQ(tool("p SET greeting hello", &code), "OK\n");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(tool("p GET greeting", &code), "\"hello\"\n");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(tool("p GET nothing", &code), "(nil)\n");
  EXPECT_EQ(tool("p RPUSH l a -b", &code), "(integer) 2\n");
  EXPECT_EQ(tool("p LRANGE l 0 -1", &code), "1) \"a\"\n2) \"-b\"\n");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(tool("p LPUSH greeting x", &code).rfind("(error) WRONGTYPE", 0), 0u);
  EXPECT_EQ(code, 1);
  // Without $OTPD_NODE the store holds no facts: the name registry finds it.
  EXPECT_EQ(t::sh_output(fmt::format("OTPD_RUNTIME_DIR={}/rt OTPD_NODE=elsewhere {} p GET greeting",
                                     dir_.path(), t::shell_quote(t::bin_path("otp-redis")))),
            "\"hello\"\n");
  (void)tool("nosuchpool PING", &code);
  EXPECT_EQ(code, 111);
  (void)tool("p", &code);
  EXPECT_EQ(code, 100);
  redis_.kill();
  ASSERT_TRUE(t::wait_until([&] {
    (void)tool("p PING", &code);
    return code == 111;
  }));
}

}  // namespace
}  // namespace otpd::redis_pool

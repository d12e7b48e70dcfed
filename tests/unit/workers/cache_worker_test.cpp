// The training's TermsCache tests, against the real cache_worker program.
#include <signal.h>

#include <chrono>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/runtime/gen_server.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;

namespace {
using reply = std::tuple<std::string, std::string>;

class CacheWorker : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = rt::spawn_exec({t::bin_path("cache_worker"), "--evict-ms", "50"},
                            {.spawn = {.monitor = true, .name = "cache"}, .wait_ready = true});
    ASSERT_TRUE(w) << w.error().message();
    worker_ = *w;
  }
  void TearDown() override {
    ::kill(worker_.pid, SIGTERM);
    auto down = rt::receive_ref(worker_.monitor_ref, rt::deadline::after(t::scaled(10s)));
    ASSERT_TRUE(down);
    EXPECT_EQ(down->reason(), otpd::core::exit_reason::normal());
  }
  static otpd::core::Result<reply> get(const std::string& key) {
    return rt::call<reply>(std::string("cache"), std::make_tuple(std::string("get"), key),
                           t::scaled(5s));
  }
  rt::spawned_process worker_;
};
}  // namespace

TEST_F(CacheWorker, PutThenGet) {
  ASSERT_TRUE(rt::cast(std::string("cache"),
                       std::make_tuple(std::string("put"), std::string("k"), std::string("v"))));
  auto r = get("k");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, reply("ok", "v"));
}

TEST_F(CacheWorker, MissingKeyGivesNothing) {
  auto r = get("nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, reply("error", "not_found"));
}

TEST_F(CacheWorker, ValueWithTtlIsThereAtOnceAndGoneAfterExpiry) {
  ASSERT_TRUE(rt::cast(std::string("cache"), std::make_tuple(std::string("put"), std::string("t"),
                                                             std::string("v"), 300)));
  auto now = get("t");
  ASSERT_TRUE(now);
  EXPECT_EQ(*now, reply("ok", "v"));
  // Wait on the expiry itself: poll the cache until the entry is gone.
  EXPECT_TRUE(
      t::wait_until([] { return get("t").value_or(reply()) == reply("error", "not_found"); }));
  // And the periodic evict reclaims it: the size drops to 0.
  EXPECT_TRUE(t::wait_until([] {
    auto n = rt::call<std::tuple<std::string, int>>(std::string("cache"),
                                                    std::make_tuple(std::string("size")));
    return n && std::get<1>(*n) == 0;
  }));
}

TEST_F(CacheWorker, GarbageCallsAndCastsNeitherCrashItNorStopItServing) {
  std::string deep(10'000, '\x91');
  // Well-formed terms of the wrong shape: each call is answered with an error.
  std::vector<std::string> wrong_shape = {
      rt::pack(std::vector<int>{}),
      rt::pack(std::string("get")),
      rt::pack(msgpack::type::nil_t()),
      rt::pack(std::map<std::string, int>{{"get", 1}}),
      rt::pack(std::make_tuple(1, 2)),
      rt::pack(std::make_tuple(std::string("get"))),
      rt::pack(std::make_tuple(std::string("get"), 1, 2)),
      rt::pack(std::make_tuple(std::string("put"), 1, 2, std::string("ttl"))),
  };
  for (const auto& body : wrong_shape) {
    auto r = rt::call_message(std::string("cache"), body, t::scaled(5s));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->as<reply>().value_or(reply()), reply("error", "bad_request"));
    ASSERT_TRUE(rt::send_message(std::string("cache"), rt::kind::cast, {}, body));
  }
  // Bytes that are not a bounded msgpack term at all, as casts (a call would
  // only time out: the mailbox drops them before the server sees them).
  for (std::string body : {std::string("\xc1"), std::string("\xdd\x80\x00\x00\x00", 5),
                           std::string("\xdb\xff\xff\xff\xff", 5), deep + '\xc0'}) {
    ASSERT_TRUE(rt::send_message(std::string("cache"), rt::kind::cast, {}, body));
  }
  ASSERT_TRUE(rt::cast(std::string("cache"),
                       std::make_tuple(std::string("put"), std::string("k"), std::string("v"))));
  auto r = get("k");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, reply("ok", "v"));
}

// The training's TermsCache tests, against the real cache_worker program.
#include <signal.h>

#include <chrono>
#include <string>
#include <tuple>

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

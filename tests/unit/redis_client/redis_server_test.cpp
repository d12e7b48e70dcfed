#include <stdlib.h>

#include <string>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <otpd/testing/redis_server.hpp>

namespace t = otpd::testing;
using std::chrono::milliseconds;

namespace {

// The check every Redis test starts with fails the test, with the reason,
// when redis-server is missing: it never passes or skips without Redis.
TEST(RedisServerHelper, FailsTheTestWhenRedisServerIsMissing) {
  const char* path = ::getenv("PATH");
  std::string saved = path != nullptr ? path : "";
  ::setenv("PATH", "/nonexistent-otpd", 1);
  EXPECT_NONFATAL_FAILURE(
      {
        t::redis_server s;
        EXPECT_TRUE(s.running()) << s.error();
      },
      "redis-server is not installed");
  ::setenv("PATH", saved.c_str(), 1);
}

TEST(RedisServerHelper, PausesResumesKillsAndRestartsOnTheSamePort) {
  t::redis_server s;
  ASSERT_TRUE(s.running()) << s.error();
  const int port = s.port();
  const pid_t first = s.pid();
  EXPECT_TRUE(s.ping());
  s.pause();
  EXPECT_FALSE(s.ping(milliseconds(50))) << "a stopped server does not answer";
  s.resume();
  EXPECT_TRUE(s.ping(milliseconds(2000)));
  s.kill();
  EXPECT_FALSE(s.running());
  EXPECT_FALSE(t::process_alive(first));
  EXPECT_FALSE(s.ping());
  ASSERT_TRUE(s.start()) << s.error();
  EXPECT_EQ(s.port(), port);
  EXPECT_NE(s.pid(), first);
  EXPECT_TRUE(s.ping());
  s.stop();
  EXPECT_FALSE(s.running());
  EXPECT_TRUE(t::zombie_children().empty());
}

}  // namespace

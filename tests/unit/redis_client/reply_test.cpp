#include <gtest/gtest.h>

#include <otpd/redis_client/connection.hpp>
#include <otpd/redis_client/reply.hpp>

namespace rc = otpd::redis_client;
using std::chrono::milliseconds;

TEST(Reply, PrintsLikeRedisCli) {
  EXPECT_EQ(rc::reply::status("OK").to_string(), "OK");
  EXPECT_EQ(rc::reply::nil().to_string(), "(nil)");
  EXPECT_EQ(rc::reply::of_integer(-3).to_string(), "(integer) -3");
  EXPECT_EQ(rc::reply::error("ERR x").to_string(), "(error) ERR x");
  EXPECT_EQ(rc::reply::bulk(std::string("a\0\r\n\"", 5)).to_string(), "\"a\\x00\\r\\n\\\"\"");
  auto nested = rc::reply::array(
      {rc::reply::of_integer(1), rc::reply::array({rc::reply::bulk("x"), rc::reply::nil()})});
  EXPECT_EQ(nested.to_string(), "1) (integer) 1\n2) 1) \"x\"\n   2) (nil)");
  EXPECT_EQ(rc::reply::array({}).to_string(), "(empty array)");
}

TEST(Backoff, GrowsExponentiallyUpToTheCap) {
  EXPECT_EQ(rc::backoff_delay(milliseconds(50), milliseconds(5000), 0, 0.0, 0.7), milliseconds(50));
  EXPECT_EQ(rc::backoff_delay(milliseconds(50), milliseconds(5000), 1, 0.0, 0.7),
            milliseconds(100));
  EXPECT_EQ(rc::backoff_delay(milliseconds(50), milliseconds(5000), 4, 0.0, 0.7),
            milliseconds(800));
  EXPECT_EQ(rc::backoff_delay(milliseconds(50), milliseconds(5000), 7, 0.0, 0.7),
            milliseconds(5000));
  EXPECT_EQ(rc::backoff_delay(milliseconds(50), milliseconds(5000), 1000, 0.0, 0.7),
            milliseconds(5000));
}

TEST(Backoff, JitterTakesAtMostItsShare) {
  // jitter 0.5: the delay lies in [d/2, d], the random unit picks where.
  EXPECT_EQ(rc::backoff_delay(milliseconds(100), milliseconds(10000), 2, 0.5, 0.0),
            milliseconds(400));
  EXPECT_EQ(rc::backoff_delay(milliseconds(100), milliseconds(10000), 2, 0.5, 0.5),
            milliseconds(300));
  EXPECT_EQ(rc::backoff_delay(milliseconds(100), milliseconds(10000), 2, 0.5, 0.999),
            milliseconds(200));
  EXPECT_EQ(rc::backoff_delay(milliseconds(100), milliseconds(10000), 2, 1.0, 0.999),
            milliseconds(0));
  EXPECT_EQ(rc::backoff_delay(milliseconds(0), milliseconds(10000), 5, 0.5, 0.3), milliseconds(0));
}

#include <chrono>
#include <cstdint>

#include <gtest/gtest.h>

#include <otpd/core/clock.hpp>

using namespace std::chrono_literals;
using otpd::core::ceil_ms;
using otpd::core::deadline;

// A timer armed with ceil_ms(d) must not fire before d has passed: any
// fraction of a millisecond counts as a whole one.
TEST(Clock, CeilMsRoundsUpAndNeverGoesNegative) {
  EXPECT_EQ(ceil_ms(0ns), 0u);
  EXPECT_EQ(ceil_ms(-5ms), 0u);
  EXPECT_EQ(ceil_ms(1ns), 1u);
  EXPECT_EQ(ceil_ms(999us), 1u);
  EXPECT_EQ(ceil_ms(1ms), 1u);
  EXPECT_EQ(ceil_ms(1ms + 1ns), 2u);
  EXPECT_EQ(ceil_ms(std::chrono::hours(24 * 365)), std::uint64_t{365} * 24 * 3600 * 1000);
}

TEST(Clock, PollTimeoutIsMinusOneForNeverAndZeroOnceExpired) {
  EXPECT_EQ(deadline::never().poll_timeout_ms(), -1);
  EXPECT_EQ(deadline(otpd::core::clock::now() - 1s).poll_timeout_ms(), 0);
  int ms = deadline::after(10s).poll_timeout_ms();
  EXPECT_GT(ms, 9000);
  EXPECT_LE(ms, 10000);
  EXPECT_EQ(deadline::after(std::chrono::hours(24 * 365 * 100)).poll_timeout_ms(), 0x7fffffff);
}

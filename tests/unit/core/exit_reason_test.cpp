#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <otpd/core/exit_reason.hpp>

using otpd::core::exit_kind;
using otpd::core::exit_reason;

TEST(ExitReason, FromWaitStatus) {
  EXPECT_EQ(exit_reason::from_wait_status(0), exit_reason::normal());
  EXPECT_EQ(exit_reason::from_wait_status(3 << 8), (exit_reason{exit_kind::exit_code, 3}));
  EXPECT_EQ(exit_reason::from_wait_status(SIGKILL).kind, exit_kind::killed);
  EXPECT_EQ(exit_reason::from_wait_status(SIGSEGV), (exit_reason{exit_kind::signal, SIGSEGV}));
  EXPECT_EQ(exit_reason::from_wait_status(SIGSEGV | 0x80).kind, exit_kind::core_dump);
}

TEST(ExitReason, Strings) {
  EXPECT_EQ(exit_reason::normal().to_string(), "normal");
  EXPECT_EQ(exit_reason::code(3).to_string(), "exit 3");
  EXPECT_EQ(exit_reason::from_signal(SIGKILL).to_string(), "killed");
  EXPECT_EQ(exit_reason::from_signal(SIGTERM).to_string(), "signal SIGTERM");
  EXPECT_EQ(otpd::core::signal_from_name("TERM"), SIGTERM);
  EXPECT_EQ(otpd::core::signal_from_name("SIGKILL"), SIGKILL);
  EXPECT_EQ(otpd::core::signal_from_name("9"), 9);
  EXPECT_EQ(otpd::core::signal_from_name("NOPE"), 0);
}

TEST(ExitReason, NormalForTransient) {
  EXPECT_TRUE(exit_reason::normal().is_normal());
  EXPECT_TRUE((exit_reason{exit_kind::shutdown, 0}).is_normal());
  EXPECT_FALSE(exit_reason::code(1).is_normal());
  EXPECT_FALSE(exit_reason::from_signal(SIGKILL).is_normal());
}

TEST(ExitReason, CodesFromTheWireKeepTheirMeaningAndUnknownOnesAreAbnormal) {
  for (int k = 0; k <= otpd::core::exit_kind_max; ++k) {
    EXPECT_EQ(static_cast<int>(exit_reason::from_codes(k, 7).kind), k);
  }
  // Stable numbers: shutdown and killed travel as 5 and 4.
  EXPECT_EQ(exit_reason::from_codes(5, 0), (exit_reason{exit_kind::shutdown, 0}));
  EXPECT_EQ(exit_reason::from_codes(4, 9), exit_reason::from_signal(SIGKILL));
  // A newer peer's reason this build does not know: unknown, abnormal.
  for (int k : {otpd::core::exit_kind_max + 1, 200, -1}) {
    exit_reason r = exit_reason::from_codes(k, 3);
    EXPECT_EQ(r.kind, exit_kind::unknown);
    EXPECT_EQ(r.value, 3);
    EXPECT_FALSE(r.is_normal());
    EXPECT_EQ(r.to_string(), "unknown");
  }
}

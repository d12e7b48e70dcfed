// The runtime monitoring a process otpd supervises: the DOWN carries the
// exit reason otpd saw as the parent (the monitor itself only sees a pidfd).
#include <chrono>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/exit_reason.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/testing/otpd_node.hpp>
#include <otpd/testing/runtime_session.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

TEST(MonitorThroughOtpd, DownOfASupervisedWorkerCarriesTheReasonOtpdSaw) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("w"), 10));
  testing::runtime_session session(n.rt());
  ASSERT_TRUE(session.ok()) << session.error().message();
  struct killing {
    const char* signal;
    core::exit_reason reason;
  };
  for (const killing& k : {killing{"-9", core::exit_reason::from_signal(SIGKILL)},
                           killing{"-TERM", core::exit_reason::from_signal(SIGTERM)}}) {
    pid_t w = n.wait_running("w");
    ASSERT_GT(w, 0) << n.log();
    runtime::ref mon = runtime::monitor(w);
    ASSERT_EQ(testing::sh(fmt::format("kill {} {}", k.signal, w)), 0);
    auto down = runtime::receive_ref(mon, runtime::deadline::after(testing::scaled(10s)));
    ASSERT_TRUE(down.has_value());
    EXPECT_EQ(down->from, w);
    // Without otpd's exit record this would be exit_kind::unknown.
    EXPECT_EQ(down->reason(), k.reason) << down->reason().to_string();
    ASSERT_GT(n.wait_running("w", w), 0) << n.log();
  }
}

// A worker stopped by the operator: the runtime's DOWN says shutdown, as the
// daemon's own events do; one whose stop needed SIGKILL says killed.
TEST(MonitorThroughOtpd, DownOfAStoppedWorkerSaysShutdownOrKilled) {
  otpd_node n;
  n.start(root_yaml("one_for_one",
                    sleeper("w") + fmt::format("    - {{id: deaf, command: [{}, ignore-term, "
                                               "sleep], shutdown: 200}}\n",
                                               otpd_node::child())));
  testing::runtime_session session(n.rt());
  ASSERT_TRUE(session.ok()) << session.error().message();
  struct stopping {
    const char* path;
    core::exit_reason reason;
  };
  for (const stopping& s : {stopping{"w", {core::exit_kind::shutdown, 0}},
                            stopping{"deaf", core::exit_reason::from_signal(SIGKILL)}}) {
    pid_t w = n.wait_running(s.path);
    ASSERT_GT(w, 0) << n.log();
    runtime::ref mon = runtime::monitor(w);
    ASSERT_EQ(n.ctl(fmt::format("stop {}", s.path)), 0);
    auto down = runtime::receive_ref(mon, runtime::deadline::after(testing::scaled(10s)));
    ASSERT_TRUE(down.has_value());
    EXPECT_EQ(down->from, w);
    EXPECT_EQ(down->reason(), s.reason) << down->reason().to_string();
  }
}

}  // namespace
}  // namespace otpd::itest

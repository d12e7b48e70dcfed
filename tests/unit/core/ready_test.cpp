// Readiness: notify_ready (child side) and wait_ready (parent side).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include <otpd/core/pipe.hpp>
#include <otpd/core/ready.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/testing/testing.hpp>

namespace core = otpd::core;
namespace t = otpd::testing;
using namespace std::chrono_literals;

TEST(Ready, ChildNotifiesThroughTheNamedFdOnce) {
  auto p = core::make_pipe();
  ASSERT_TRUE(p);
  std::string fd = std::to_string(p->write.release());
  ::setenv(core::ready_fd_env, fd.c_str(), 1);
  EXPECT_TRUE(core::notify_ready());
  EXPECT_EQ(std::getenv(core::ready_fd_env), nullptr);
  EXPECT_TRUE(core::wait_ready(p->read.get(), core::deadline::after(t::scaled(1000ms))));
  EXPECT_TRUE(core::notify_ready());  // no variable: a no-op
}

TEST(Ready, EofBeforeTheNewlineIsAFailedStart) {
  auto p = core::make_pipe();
  ASSERT_TRUE(p);
  ASSERT_EQ(::write(p->write.get(), "Eno", 3), 3);
  p->write.reset();
  EXPECT_EQ(core::wait_ready(p->read.get(), core::deadline::after(t::scaled(1000ms))).error(),
            core::errc::start_failed);
}

TEST(Ready, SilenceUntilTheDeadlineIsATimeout) {
  auto p = core::make_pipe();
  ASSERT_TRUE(p);
  EXPECT_EQ(core::wait_ready(p->read.get(), core::deadline::after(50ms)).error(),
            core::errc::timeout);
}

TEST(Ready, AnyNewlineMeansReady) {
  EXPECT_TRUE(core::holds_ready_line("x\n", 2));
  EXPECT_FALSE(core::holds_ready_line("xy", 2));
  EXPECT_FALSE(core::holds_ready_line("", 0));
}

TEST(Pipe, BothEndsAreCloexec) {
  auto p = core::make_pipe(O_NONBLOCK);
  ASSERT_TRUE(p);
  EXPECT_TRUE(::fcntl(p->read.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(::fcntl(p->write.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(::fcntl(p->read.get(), F_GETFL) & O_NONBLOCK);
}

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/runtime/task.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;
using otpd::core::errc;
using otpd::core::exit_kind;
using otpd::core::exit_reason;

namespace {
bool no_zombies() {
  rt::dispatch_pending();
  return t::zombie_children().empty();
}
}  // namespace

TEST(Task, AwaitGivesTheValue) {
  auto task = rt::async([] { return std::string("computed in ") + std::to_string(::getpid()); });
  auto v = task.await(t::scaled(10s));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, "computed in " + std::to_string(task.pid()));
  EXPECT_TRUE(no_zombies());
  EXPECT_FALSE(t::process_alive(task.pid()));
}

TEST(Task, CrashGivesTheReason) {
  auto task = rt::async([]() -> int {
    rlimit rl{0, 0};
    ::setrlimit(RLIMIT_CORE, &rl);
    ::raise(SIGSEGV);
    return 1;
  });
  auto v = task.await(t::scaled(10s));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), errc::crashed);
  EXPECT_EQ(task.reason(), (exit_reason{exit_kind::signal, SIGSEGV}));
  auto thrown = rt::async([]() -> int { throw std::runtime_error("boom"); });
  ASSERT_FALSE(thrown.await(t::scaled(10s)));
  EXPECT_EQ(thrown.reason(), exit_reason::code(70));
}

TEST(Task, AwaitTimeoutLeavesItRunningThenAwaitOrKillLeavesNoZombie) {
  auto task = rt::async([] {
    ::pause();
    return 1;
  });
  auto v = task.await(30ms);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), errc::timeout);
  EXPECT_TRUE(t::process_alive(task.pid()));
  auto k = task.await_or_kill(30ms);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error(), errc::timeout);
  EXPECT_EQ(task.reason().kind, exit_kind::killed);
  EXPECT_FALSE(t::process_alive(task.pid()));
  EXPECT_EQ(t::process_state(task.pid()), 0) << "the killed task is not reaped";
  EXPECT_TRUE(no_zombies());
  // Its DOWN was consumed: nothing of the task is left in the mailbox.
  EXPECT_EQ(rt::queued(), 0u);
}

TEST(Task, AwaitOrKillKeepsAResultThatIsAlreadyThere) {
  // The task has finished and its result sits unread in our socket when the
  // deadline passes: await_or_kill must return it, not lose it.
  auto task = rt::async([] { return 99; });
  ASSERT_TRUE(t::wait_until([&] {
    char s = t::process_state(task.pid());
    return s == 'Z';
  }));
  auto v = task.await_or_kill(0ms);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, 99);
  EXPECT_TRUE(no_zombies());
  EXPECT_EQ(rt::queued(), 0u);
}

TEST(Task, DroppedTaskIsKilledAndReaped) {
  pid_t pid;
  {
    auto task = rt::async([] {
      ::pause();
      return 0;
    });
    pid = task.pid();
    ASSERT_TRUE(t::process_alive(pid));
  }
  EXPECT_FALSE(t::process_alive(pid));
  EXPECT_TRUE(no_zombies());
}

TEST(ParallelMap, KeepsOrderAndReportsFailuresPerElement) {
  std::vector<int> in;
  for (int i = 0; i < 24; ++i) {
    in.push_back(i);
  }
  auto out = rt::parallel_map(
      in,
      [](const int& x) -> int {
        if (x == 7) {
          std::_Exit(3);
        }
        if (x == 13) {
          ::raise(SIGKILL);
        }
        return x * x;
      },
      4);
  ASSERT_EQ(out.size(), in.size());
  for (int i = 0; i < 24; ++i) {
    if (i == 7) {
      EXPECT_EQ(out[i].value.error(), errc::crashed);
      EXPECT_EQ(out[i].reason, exit_reason::code(3));
    } else if (i == 13) {
      EXPECT_EQ(out[i].value.error(), errc::crashed);
      EXPECT_EQ(out[i].reason.kind, exit_kind::killed);
    } else {
      ASSERT_TRUE(out[i].value) << i;
      EXPECT_EQ(*out[i].value, i * i);
    }
  }
  EXPECT_TRUE(no_zombies());
}

TEST(ParallelMap, BoundsTheNumberOfProcesses) {
  // Each element reports how many of its siblings run at the same time, by
  // counting live children of the caller.
  pid_t caller = ::getpid();
  std::vector<int> in(12, 0);
  auto out = rt::parallel_map(
      in,
      [caller](const int&) {
        std::string cmd = "ps -o pid= --ppid " + std::to_string(caller) + " | wc -l";
        int n = std::atoi(t::sh_output(cmd).c_str());
        return n;
      },
      3);
  for (const auto& o : out) {
    ASSERT_TRUE(o.value);
    EXPECT_LE(*o.value, 3);
  }
}

TEST(ParallelMap, SlowElementTimesOutAlone) {
  std::vector<int> in{1, 2, 3};
  auto out = rt::parallel_map(
      in,
      [](const int& x) {
        if (x == 2) {
          ::pause();
        }
        return x;
      },
      3, t::scaled(500ms));
  ASSERT_TRUE(out[0].value);
  EXPECT_EQ(out[1].value.error(), errc::timeout);
  ASSERT_TRUE(out[2].value);
  EXPECT_EQ(*out[2].value, 3);
  EXPECT_TRUE(no_zombies());
}

// Restarts that do not wait for exec: many children killed at once all come
// back, and an exec that fails at restart time is a failed start with its
// errno, not an exit code 127.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>
#include <otpd/testing/runtime_session.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

TEST(Restart, ManyKilledAtOnceAllComeBackWithNewPids) {
  constexpr int n_children = 60;
  std::string children;
  for (int i = 0; i < n_children; ++i) {
    children += sleeper(fmt::format("w{}", i), ", stdout: null");
  }
  otpd_node n;
  n.start(root_yaml("one_for_one", children, 1000, 5));
  std::vector<pid_t> old;
  for (int i = 0; i < n_children; ++i) {
    old.push_back(n.wait_running(fmt::format("w{}", i)));
    ASSERT_GT(old.back(), 0) << n.log();
  }
  // One shell command kills them all, so the deaths arrive as one burst.
  std::string pids;
  for (pid_t p : old) {
    pids += " " + std::to_string(p);
  }
  testing::sh("kill -9" + pids);
  std::set<pid_t> fresh;
  for (int i = 0; i < n_children; ++i) {
    pid_t p = n.wait_running(fmt::format("w{}", i), old[static_cast<std::size_t>(i)]);
    ASSERT_GT(p, 0) << "w" << i << " not back\n" << n.log();
    EXPECT_TRUE(testing::process_alive(p));
    fresh.insert(p);
  }
  EXPECT_EQ(fresh.size(), static_cast<std::size_t>(n_children));
  for (pid_t p : old) {
    EXPECT_EQ(fresh.count(p), 0U);
  }
  json st = n.status();
  for (int i = 0; i < n_children; ++i) {
    EXPECT_EQ(otpd_node::find(st, fmt::format("w{}", i))["restarts"], 1);
  }
}

TEST(Restart, ExecFailureAtRestartIsAFailedStartWithItsErrno) {
  otpd_node n;
  // A copy of the test child that we delete while it runs: the config was
  // valid, the restart's execve then fails with ENOENT.
  std::string prog = n.dir() + "/vanishing_child";
  std::filesystem::copy_file(otpd_node::child(), prog);
  std::filesystem::permissions(prog, std::filesystem::perms::owner_all);
  n.start(root_yaml("one_for_one", fmt::format("    - {{id: v, command: [{}, sleep]}}\n", prog), 2,
                    60));
  pid_t v = n.wait_running("v");
  ASSERT_GT(v, 0) << n.log();
  std::filesystem::remove(prog);
  shell_kill(v);
  // Every restart fails: after max_restarts the root gives up.
  EXPECT_EQ(n.wait_exit(), 1) << n.log();
  std::string log = n.log();
  EXPECT_NE(log.find("exec failed (No such file or directory)"), std::string::npos) << log;
  EXPECT_NE(log.find("start_failed"), std::string::npos) << log;
  EXPECT_EQ(log.find("exit code 127"), std::string::npos) << log;
}

// One stack_worker registered as "stack", up (notify readiness).
void start_stack(otpd_node& n) {
  n.start(
      root_yaml("one_for_one",
                fmt::format("    - {{id: stack, name: stack, command: [{}], readiness: notify}}\n",
                            testing::bin_path("stack_worker"))));
  ASSERT_GT(n.wait_running("stack"), 0) << n.log();
}

TEST(OtpctlCall, PushByCastThenPopByCallThroughTheRegistry) {
  otpd_node n;
  start_stack(n);
  std::string out;
  EXPECT_EQ(n.ctl(R"(cast stack '["push", 42]')", &out), 0) << out;
  EXPECT_EQ(n.ctl(R"(call stack '["pop"]')", &out), 0) << out;
  EXPECT_EQ(out, "[\"ok\",42]\n");
  // The stack is empty now: the server's own negative answer is still a reply.
  EXPECT_EQ(n.ctl(R"(call stack '["pop"]' --timeout 2000)", &out), 0) << out;
  EXPECT_EQ(out, "[\"error\",\"empty\"]\n");
  // Casts are ordered before a later call from the same sender.
  EXPECT_EQ(n.ctl(R"(cast stack '["push", {"k": [1, "two"]}]')", &out), 0) << out;
  EXPECT_EQ(n.ctl(R"(call stack '["pop"]')", &out), 0) << out;
  EXPECT_EQ(out, "[\"ok\",{\"k\":[1,\"two\"]}]\n");
}

TEST(OtpctlCall, ClearErrorsAndExitCodes) {
  otpd_node n;
  start_stack(n);
  std::string out;
  EXPECT_EQ(n.ctl(R"(call nobody '["pop"]')", &out), 1) << out;
  EXPECT_NE(out.find("no process named nobody"), std::string::npos) << out;
  EXPECT_EQ(n.ctl(R"(cast nobody hello)", &out), 1) << out;
  EXPECT_NE(out.find("no process named nobody"), std::string::npos) << out;
  // A bare word that is not JSON is sent as a string: the stack knows "size".
  EXPECT_EQ(n.ctl("call stack size", &out), 0) << out;
  EXPECT_EQ(out, "[\"ok\",0]\n");
  // A mailbox that never answers (this test's own): the call times out.
  {
    testing::runtime_session silent(n.rt(), "silent");
    ASSERT_TRUE(silent.ok()) << silent.error().message();
    EXPECT_EQ(n.ctl("call silent '[1]' --timeout 300", &out), 1) << out;
    EXPECT_NE(out.find("no reply from silent within 300 ms"), std::string::npos) << out;
  }
  EXPECT_EQ(n.ctl("call stack", &out), 100) << out;
  EXPECT_EQ(n.ctl("call stack '[1]' --timeout 0", &out), 100) << out;
}

}  // namespace
}  // namespace otpd::itest

// Health after start, as status shows it: a child waiting in restart backoff
// is in state `backoff` with the time of its next start, each child keeps
// its last exits, each supervisor its restart intensity.
#include <time.h>

#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

std::int64_t wall_now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

TEST(Health, BackoffIsAStateWithTheWallTimeOfTheNextStart) {
  otpd_node n;
  std::int64_t before = wall_now_ms();
  // Exits 3 at once, then waits 60 s before each restart: long enough to
  // look at, and the test ends (stopping otpd) long before the next start.
  n.start(root_yaml("one_for_one",
                    fmt::format("    - {{id: crashy, command: [{}, exit, '3'], "
                                "backoff: {{initial: 60000, max: 60000, jitter: 0}}}}\n"
                                "{}",
                                otpd_node::child(), sleeper("calm")),
                    100, 30));
  ASSERT_TRUE(n.wait_state("crashy", "backoff")) << n.state_of("crashy") << "\n" << n.log();
  json st = n.status();
  json c = otpd_node::find(st, "crashy");
  ASSERT_TRUE(c.contains("next_start_wall_ms")) << c.dump();
  ASSERT_TRUE(c.contains("last_exits")) << c.dump();
  ASSERT_EQ(c["last_exits"].size(), 1u) << c.dump();
  const json& x = c["last_exits"][0];
  EXPECT_EQ(x["reason"], "exit 3");
  EXPECT_EQ(x["reason_kind"], 1);
  EXPECT_EQ(x["reason_value"], 3);
  auto exit_wall = x["wall_ms"].get<std::int64_t>();
  EXPECT_GE(exit_wall, before - 1000);
  EXPECT_LE(exit_wall, wall_now_ms() + 1000);
  // The next start is the exit plus the 60 s delay (the clocks of the two
  // stamps differ by the few ms between them, so a generous margin).
  auto next = c["next_start_wall_ms"].get<std::int64_t>();
  EXPECT_GE(next, exit_wall + 60000 - 1000) << c.dump();
  EXPECT_LE(next, exit_wall + 60000 + 1000) << c.dump();
  EXPECT_EQ(c["pid"], nullptr);
  // The calm sibling never exited: no list, no next start.
  json calm = otpd_node::find(st, "calm");
  EXPECT_EQ(calm["state"], "running");
  EXPECT_FALSE(calm.contains("last_exits")) << calm.dump();
  EXPECT_FALSE(calm.contains("next_start_wall_ms")) << calm.dump();
  // The root's intensity: one restart (the one waiting) in its window.
  ASSERT_TRUE(st.contains("intensity")) << st.dump();
  EXPECT_EQ(st["intensity"]["used"], 1);
  EXPECT_EQ(st["intensity"]["max_restarts"], 100);
  EXPECT_EQ(st["intensity"]["max_seconds"], 30);
  // otpctl tree says so for humans.
  std::string out;
  ASSERT_EQ(n.ctl("tree", &out), 0) << out;
  EXPECT_NE(out.find("backoff"), std::string::npos) << out;
  EXPECT_NE(out.find("next start in"), std::string::npos) << out;
  EXPECT_NE(out.find("(1/100 restarts in 30s)"), std::string::npos) << out;
  // An operator start ends the wait at once; a stop ends it as stopped.
  ASSERT_EQ(n.ctl("stop crashy", &out), 0) << out;
  ASSERT_TRUE(n.wait_state("crashy", "stopped")) << n.state_of("crashy");
  EXPECT_FALSE(otpd_node::find(n.status(), "crashy").contains("next_start_wall_ms"));
}

TEST(Health, LastExitsKeepTheNewestTen) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("w"), 100, 30));
  pid_t pid = n.wait_running("w");
  ASSERT_GT(pid, 0) << n.log();
  for (int i = 0; i < 12; ++i) {
    shell_kill(pid, i % 2 == 0 ? "9" : "INT");
    pid = n.wait_running("w", pid);
    ASSERT_GT(pid, 0) << n.log();
  }
  json c = otpd_node::find(n.status(), "w");
  ASSERT_EQ(c["last_exits"].size(), 10u) << c.dump();
  std::int64_t prev = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    const json& x = c["last_exits"][i];
    // Kills 3..12 (oldest first): odd ones were SIGINT, even ones SIGKILL.
    EXPECT_EQ(x["reason"], i % 2 == 0 ? "killed" : "signal SIGINT") << x.dump();
    EXPECT_GE(x["wall_ms"].get<std::int64_t>(), prev);
    prev = x["wall_ms"].get<std::int64_t>();
  }
  EXPECT_EQ(n.status()["intensity"]["used"], 12);
}

}  // namespace
}  // namespace otpd::itest

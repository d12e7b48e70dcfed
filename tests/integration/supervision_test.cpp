// The daemon as a user sees it: a config, otpd, `kill -9` from a shell, and
// the answers of `otpctl status --json`.
#include <signal.h>
#include <sys/wait.h>

#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// The trees of this file allow 10 restarts in 10 s unless they say otherwise.
std::string tree_of(const char* strat, const std::string& children, int max_restarts = 10) {
  return root_yaml(strat, children, max_restarts);
}

TEST(Supervision, OneForOneRestartsOnlyTheKilledChild) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("a") + sleeper("b") + sleeper("c")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b"), c = n.wait_running("c");
  ASSERT_GT(c, 0);
  shell_kill(b);
  pid_t b2 = n.wait_running("b", b);
  ASSERT_GT(b2, 0) << n.log();
  EXPECT_EQ(n.pid_of("a"), a);
  EXPECT_EQ(n.pid_of("c"), c);
  json st = n.status();
  EXPECT_EQ(otpd_node::find(st, "b")["restarts"], 1);
  EXPECT_EQ(otpd_node::find(st, "b")["last_exit"], "killed");
  EXPECT_EQ(otpd_node::find(st, "a")["restarts"], 0);
}

// The operator's stop is state: it survives otpd (an orderly shutdown or a
// kill -9), until `otpctl start`.
TEST(Supervision, AChildStoppedByAnOperatorStaysStoppedAcrossOtpdRestarts) {
  otpd_node n;
  const std::string yaml = tree_of("one_for_one", sleeper("a") + sleeper("b"));
  n.start(yaml);
  ASSERT_GT(n.wait_running("a"), 0);
  ASSERT_GT(n.wait_running("b"), 0);
  ASSERT_EQ(n.ctl("stop a"), 0);
  ASSERT_TRUE(n.wait_state("a", "stopped"));
  ASSERT_EQ(n.ctl("shutdown"), 0);
  ASSERT_EQ(n.wait_exit(), 0) << n.log();

  n.start(yaml);
  ASSERT_GT(n.wait_running("b"), 0) << n.log();
  EXPECT_EQ(n.state_of("a"), "stopped");
  EXPECT_NE(n.log().find("a stays stopped: an operator stopped it"), std::string::npos) << n.log();
  // Still so after a kill -9 of otpd.
  n.signal(SIGKILL);
  ASSERT_EQ(n.wait_exit(), 128 + SIGKILL);
  n.start(yaml);
  ASSERT_GT(n.wait_running("b"), 0) << n.log();
  EXPECT_EQ(n.state_of("a"), "stopped");

  // Started again, it is no longer held: the next otpd starts it.
  ASSERT_EQ(n.ctl("start a"), 0);
  ASSERT_GT(n.wait_running("a"), 0);
  ASSERT_EQ(n.ctl("shutdown"), 0);
  ASSERT_EQ(n.wait_exit(), 0) << n.log();
  n.start(yaml);
  EXPECT_GT(n.wait_running("a"), 0) << n.log();
  EXPECT_GT(n.wait_running("b"), 0);
}

// instances: N is N children, numbered, each with its number in its values.
TEST(Supervision, InstancesAreNumberedChildrenWithTheirNumberInTheirEnvironment) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("w", ", instances: 3, env: {SLOT: 'slot-{instance}'}")));
  json st = n.status();
  for (int k = 0; k < 3; ++k) {
    std::string id = fmt::format("w-{}", k);
    pid_t pid = n.wait_running(id);
    ASSERT_GT(pid, 0) << n.log();
    json c = otpd_node::find(n.status(), id);
    EXPECT_EQ(c["instance_of"], "w");
    EXPECT_EQ(c["instance"], k);
    std::string env = testing::read_file(fmt::format("/proc/{}/environ", pid));
    EXPECT_NE(env.find(fmt::format("SLOT=slot-{}", k) + std::string(1, '\0')), std::string::npos);
  }
  EXPECT_TRUE(otpd_node::find(st, "w").is_null());
}

TEST(Supervision, OneForAllGivesEverySiblingANewPid) {
  otpd_node n;
  n.start(tree_of("one_for_all", sleeper("a") + sleeper("b") + sleeper("c")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b"), c = n.wait_running("c");
  shell_kill(b);
  EXPECT_GT(n.wait_running("a", a), 0);
  EXPECT_GT(n.wait_running("b", b), 0);
  EXPECT_GT(n.wait_running("c", c), 0);
  EXPECT_FALSE(testing::process_alive(a));
  EXPECT_FALSE(testing::process_alive(c));
  // Stopped in reverse order, restarted in start order.
  std::string log = n.log();
  auto pos = [&](const std::string& s) { return log.find(s); };
  EXPECT_LT(pos(fmt::format("c exited pid {}", c)), pos(fmt::format("a exited pid {}", a)));
  EXPECT_LT(pos(fmt::format("a exited pid {}", a)),
            pos("a started pid " + std::to_string(n.pid_of("a"))));
}

TEST(Supervision, RestForOneRestartsTheKilledChildAndThoseAfterIt) {
  otpd_node n;
  n.start(tree_of("rest_for_one", sleeper("a") + sleeper("b") + sleeper("c")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b"), c = n.wait_running("c");
  shell_kill(b);
  EXPECT_GT(n.wait_running("b", b), 0);
  EXPECT_GT(n.wait_running("c", c), 0);
  EXPECT_EQ(n.pid_of("a"), a);
}

TEST(Supervision, TransientRestartsOnlyAfterAbnormalExit) {
  otpd_node n;
  std::string marker = n.dir() + "/failed-once";
  n.start(
      tree_of("one_for_one",
              fmt::format("    - {{id: ok, command: [{}, exit, '0'], restart: transient}}\n"
                          "    - id: flaky\n      restart: transient\n      shell: true\n"
                          "      command: 'test -e {} && exec \"{}\" sleep; touch {}; exit 1'\n",
                          otpd_node::child(), marker, otpd_node::child(), marker)));
  EXPECT_GT(n.wait_running("flaky"), 0) << n.log();
  ASSERT_TRUE(testing::wait_until([&] {
    json c = otpd_node::find(n.status(), "ok");
    return c["state"] == "stopped" && c.value("last_exit", "") == "normal";
  }));
  json st = n.status();
  EXPECT_EQ(otpd_node::find(st, "ok")["restarts"], 0);
  EXPECT_EQ(otpd_node::find(st, "flaky")["restarts"], 1);
  EXPECT_EQ(otpd_node::find(st, "flaky")["last_exit"], "exit 1");
}

TEST(Supervision, TemporaryIsNeverRestarted) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("t", ", restart: temporary") + sleeper("p")));
  pid_t t = n.wait_running("t");
  pid_t p = n.wait_running("p");
  shell_kill(t);
  ASSERT_TRUE(n.wait_state("t", "failed"));
  json c = otpd_node::find(n.status(), "t");
  EXPECT_TRUE(c["pid"].is_null());
  EXPECT_EQ(c["restarts"], 0);
  EXPECT_EQ(n.pid_of("p"), p);
}

TEST(Supervision, RootIntensityExceededStopsEverythingAndExitsNonZero) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("a") + sleeper("b"), 2));
  pid_t b = n.wait_running("b");
  pid_t a = n.wait_running("a");
  for (int i = 0; i < 2; ++i) {
    shell_kill(a);
    a = n.wait_running("a", a);
    ASSERT_GT(a, 0) << n.log();
  }
  shell_kill(a);  // the third restart within 10 s: more than max_restarts 2
  EXPECT_EQ(n.wait_exit(), 1) << n.log();
  EXPECT_FALSE(testing::process_alive(b));
  EXPECT_NE(n.log().find("root supervisor gave up: child a exited: killed"), std::string::npos)
      << n.log();
}

TEST(Supervision, NestedSupervisorEscalatesToItsParent) {
  otpd_node n;
  n.start(fmt::format(
      "supervisor:\n  strategy: one_for_one\n  max_restarts: 5\n  max_seconds: 10\n  children:\n"
      "{}    - id: sub\n      strategy: one_for_one\n      max_restarts: 1\n      max_seconds: 10\n"
      "      children:\n        - {{id: w, command: [{}, sleep]}}\n",
      sleeper("top"), otpd_node::child()));
  pid_t top = n.wait_running("top");
  pid_t w = n.wait_running("sub/w");
  shell_kill(w);
  w = n.wait_running("sub/w", w);
  ASSERT_GT(w, 0);
  shell_kill(w);  // sub's second restart in 10 s: it gives up; root restarts it
  w = n.wait_running("sub/w", w);
  ASSERT_GT(w, 0) << n.log();
  json st = n.status();
  EXPECT_EQ(otpd_node::find(st, "sub")["restarts"], 1);
  EXPECT_EQ(otpd_node::find(st, "sub")["last_exit"], "shutdown");
  EXPECT_EQ(n.pid_of("top"), top);
  EXPECT_NE(n.log().find("sub intensity_exceeded"), std::string::npos) << n.log();
}

TEST(Supervision, ShutdownStopsInReverseOrderAndKillsWhatIgnoresSigterm) {
  otpd_node n;
  n.start(tree_of("one_for_one",
                  sleeper("a") + sleeper("b") +
                      fmt::format("    - {{id: stubborn, command: [{}, ignore-term, sleep], "
                                  "shutdown: 300}}\n",
                                  otpd_node::child())));
  pid_t a = n.wait_running("a"), b = n.wait_running("b"), s = n.wait_running("stubborn");
  ASSERT_GT(s, 0);
  // Readiness is exec: give the child a moment to install SIG_IGN by waiting
  // for its signal mask in /proc.
  ASSERT_TRUE(testing::wait_until([&] {
    std::string st = testing::read_file(fmt::format("/proc/{}/status", s));
    auto at = st.find("SigIgn:");
    return at != std::string::npos && st.find("4000", at) < st.find('\n', at);
  }));
  n.signal(SIGTERM);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
  std::string log = n.log();
  auto ps = log.find(fmt::format("stubborn exited pid {}: killed", s));
  auto pb = log.find(fmt::format("b exited pid {}", b));
  auto pa = log.find(fmt::format("a exited pid {}", a));
  ASSERT_NE(ps, std::string::npos) << log;
  EXPECT_LT(ps, pb);
  EXPECT_LT(pb, pa);
  EXPECT_NE(log.find("still running after its shutdown timeout"), std::string::npos);
}

TEST(Supervision, GrandchildrenDieWithTheProcessGroup) {
  otpd_node n;
  std::string gpath = n.dir() + "/grandchild";
  n.start(
      tree_of("one_for_one", fmt::format("    - {{id: g, command: [{}, grandchild, {}, sleep]}}\n",
                                         otpd_node::child(), gpath)));
  pid_t g = n.wait_running("g");
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(gpath).empty(); }));
  pid_t grandchild = std::stoi(testing::read_file(gpath));
  ASSERT_TRUE(testing::process_alive(grandchild));
  shell_kill(g);
  EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(grandchild); }));
  EXPECT_GT(n.wait_running("g", g), 0);
}

TEST(Supervision, StopSweepsDescendantsThatLeftTheGroup) {
  otpd_node n;
  std::string gpath = n.dir() + "/escaped";
  n.start(tree_of("one_for_one",
                  fmt::format("    - {{id: g, command: [{}, grandchild-setsid, {}, sleep]}}\n",
                              otpd_node::child(), gpath)));
  n.wait_running("g");
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(gpath).empty(); }));
  pid_t escaped = std::stoi(testing::read_file(gpath));
  ASSERT_TRUE(testing::process_alive(escaped));
  EXPECT_EQ(n.ctl("stop g"), 0);
  EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(escaped); }));
  EXPECT_EQ(n.state_of("g"), "stopped");
}

TEST(Supervision, OrphansAreReapedWithoutStealingAChildsStatus) {
  otpd_node n;
  std::string gpath = n.dir() + "/orphan";
  // Process groups: in cgroup mode the grandchild would die with its worker
  // (containment_test.cpp); here it must outlive it, as an orphan of otpd.
  n.start(tree_of("one_for_one",
                  fmt::format("    - {{id: a, restart: temporary, command: [{}, grandchild-setsid, "
                              "{}, wait, '100', exit, '3']}}\n",
                              otpd_node::child(), gpath) +
                      sleeper("b")),
          true, {"--containment", "pgroup"});
  // a's own exit status reaches a (otpd reaps everything, and dispatches).
  ASSERT_TRUE(testing::wait_until([&] {
    json c = otpd_node::find(n.status(), "a");
    return c["state"] == "failed" && c.value("last_exit", "") == "exit 3";
  })) << n.log();
  pid_t orphan = std::stoi(testing::read_file(gpath));
  // The grandchild left a's group and outlived a: re-parented to otpd, the
  // subreaper, which reaps it when it dies (no zombie left behind).
  std::string stat = testing::read_file(fmt::format("/proc/{}/stat", orphan));
  ASSERT_FALSE(stat.empty());
  pid_t ppid = std::atoi(stat.substr(stat.rfind(')') + 4).c_str());
  EXPECT_EQ(ppid, n.pid());
  shell_kill(orphan);
  EXPECT_TRUE(testing::wait_until([&] { return testing::process_state(orphan) == 0; }));
  EXPECT_EQ(n.state_of("b"), "running");
}

TEST(Supervision, KillNineOfOtpdLeavesNoChildAlive) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("a") + sleeper("b")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b");
  shell_kill(n.pid());
  EXPECT_EQ(n.wait_exit(), 128 + SIGKILL);
  EXPECT_TRUE(testing::wait_until(
      [&] { return !testing::process_alive(a) && !testing::process_alive(b); }));
}

TEST(Supervision, TwoHundredKillsNeverLoseAPermanentChild) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("w"), 1000));
  pid_t w = n.wait_running("w");
  for (int i = 0; i < 200; ++i) {
    ASSERT_GT(w, 0) << "lost after " << i << " kills\n" << n.log();
    shell_kill(w);
    w = n.wait_running("w", w);
  }
  ASSERT_GT(w, 0);
  json c = otpd_node::find(n.status(), "w");
  EXPECT_EQ(c["restarts"], 200);
  EXPECT_EQ(c["state"], "running");
}

TEST(Supervision, ChildThatNeverBecomesReadyFailsItsStartAfterTheTimeout) {
  otpd_node n;
  n.start(tree_of("one_for_one",
                  fmt::format("    - {{id: slow, command: [{}, sleep], readiness: notify, "
                              "start_timeout: 300}}\n",
                              otpd_node::child())),
          false);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(n.wait_exit(), 1) << n.log();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_NE(n.log().find("not ready within its start timeout"), std::string::npos) << n.log();
  EXPECT_NE(n.log().find("root supervisor failed to start: child slow failed to start"),
            std::string::npos)
      << n.log();
}

TEST(Supervision, NotifyAndCommandReadinessGateTheStartOrder) {
  otpd_node n;
  std::string flag = n.dir() + "/up";
  n.start(
      tree_of("one_for_one",
              fmt::format("    - {{id: a, command: [{0}, wait, '100', ready, sleep], "
                          "readiness: notify}}\n"
                          "    - id: b\n      command: [{0}, wait, '100', pidfile, {1}, sleep]\n"
                          "      readiness: {{command: 'test -e {1}'}}\n",
                          otpd_node::child(), flag) +
                  sleeper("c")));
  pid_t c = n.wait_running("c");
  ASSERT_GT(c, 0) << n.log();
  std::string log = n.log();
  EXPECT_LT(log.find("a ready"), log.find("b started"));
  EXPECT_LT(log.find("b ready"), log.find("c started"));
  EXPECT_TRUE(testing::process_alive(std::stoi(testing::read_file(flag))));
}

TEST(Supervision, ReloadAddsRemovesAndRestartsChangedChildren) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("a") + sleeper("b") + sleeper("c")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b"), c = n.wait_running("c");
  n.write_config(
      tree_of("one_for_one", sleeper("a") + sleeper("b", ", env: {X: '1'}") + sleeper("d")));
  std::string out;
  // A dry run first: the same answer, and nothing happens.
  EXPECT_EQ(n.ctl("reload --dry-run", &out), 0) << out;
  EXPECT_EQ(out,
            "would be added: d\nwould be removed: c\nwould be changed: b\n  b: env\n"
            "untouched: a\n");
  EXPECT_EQ(n.pid_of("b"), b);
  EXPECT_EQ(n.pid_of("c"), c);
  EXPECT_EQ(n.state_of("d"), "absent");
  EXPECT_EQ(n.ctl("reload", &out), 0) << out;
  EXPECT_EQ(out, "added: d\nremoved: c\nchanged: b\n  b: env\nuntouched: a\n");
  EXPECT_GT(n.wait_running("b", b), 0);
  EXPECT_GT(n.wait_running("d"), 0);
  ASSERT_TRUE(n.wait_state("c", "absent"));
  EXPECT_FALSE(testing::process_alive(c));
  EXPECT_EQ(n.pid_of("a"), a);
  // SIGHUP reloads too; an invalid config is refused and nothing changes.
  n.write_config("supervisor:\n  strategy: sideways\n");
  EXPECT_EQ(n.ctl("reload", &out), 1);
  EXPECT_NE(out.find("otpd.yaml:2:13: supervisor.strategy: expected one of"), std::string::npos)
      << out;
  EXPECT_EQ(n.pid_of("a"), a);
}

TEST(Supervision, SighupReloadsAndJsonLogsAreOneObjectPerLine) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("a")), true, {"--log-format", "json"});
  pid_t a = n.wait_running("a");
  n.write_config(tree_of("one_for_one", sleeper("a") + sleeper("b")));
  n.signal(SIGHUP);
  EXPECT_GT(n.wait_running("b"), 0) << n.log();
  EXPECT_EQ(n.pid_of("a"), a);
  bool saw_reload = false;
  std::istringstream lines(n.log());
  std::string line;
  while (std::getline(lines, line)) {
    auto brace = line.find('{');
    if (brace == std::string::npos) {
      continue;
    }
    json j = json::parse(line.substr(brace), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    saw_reload = saw_reload || j.value("event", "") == "reload_applied";
  }
  EXPECT_TRUE(saw_reload) << n.log();
}

TEST(Supervision, SecondOtpdOnTheSameRuntimeDirRefusesToStart) {
  otpd_node n;
  n.start(tree_of("one_for_one", sleeper("a")));
  n.wait_running("a");
  int st = 0;
  std::string out = testing::sh_output(
      fmt::format("{} {} --runtime-dir {} 2>&1", testing::shell_quote(testing::bin_path("otpd")),
                  n.config_path(), n.rt()),
      &st);
  EXPECT_EQ(WEXITSTATUS(st), 1);
  EXPECT_NE(out.find("is another otpd running"), std::string::npos) << out;
  EXPECT_EQ(n.status()["otpd_pid"], n.pid());
}

}  // namespace
}  // namespace otpd::itest

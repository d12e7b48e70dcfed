// Exit reasons as OTP has them: a child its supervisor or an operator stopped
// ends with `shutdown` (or `killed` when it needed SIGKILL); a child that
// died on its own keeps its real reason. Events, status, exit-reason and
// monitor DOWN messages all say the same.
#include <signal.h>

#include <cstdlib>
#include <map>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/supervisor/control_client.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// What each observer says of pid: "status last_exit|exit-reason|event|down".
// The monitor connection `mon` must have been set up before the exit.
class observers {
 public:
  explicit observers(otpd_node& n) : n_(n) {
    EXPECT_TRUE(events_.connect(n.rt()).has_value());
    // The events request subscribes this connection to the stream.
    EXPECT_TRUE(events_.request(R"({"cmd":"events"})").has_value());
  }

  // Monitors pid on a connection of its own (one DOWN per monitor).
  void monitor(pid_t pid) {
    auto& c = monitors_.emplace_back(std::make_unique<supervisor::control_client>());
    ASSERT_TRUE(c->connect(n_.rt()).has_value());
    auto r = c->request(fmt::format(R"({{"cmd":"monitor","pid":{}}})", pid));
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(json::parse(*r)["ok"], true) << *r;
    monitored_.push_back(pid);
  }

  // The reason of pid's "exited" event, from the stream (in any order:
  // exits read while looking for another pid are kept).
  std::string event_reason(pid_t pid) {
    while (true) {
      if (auto it = exited_.find(pid); it != exited_.end()) {
        return it->second;
      }
      auto line = events_.read_line();
      if (!line) {
        return "(stream ended)";
      }
      json j = json::parse(*line, nullptr, false);
      if (j.is_object() && j.value("event", "") == "exited") {
        exited_[j.value("pid", -1)] =
            j.value("reason", "(none)") + " " + std::to_string(j.value("reason_kind", -1));
      }
    }
  }

  std::string down_reason(pid_t pid) {
    for (std::size_t i = 0; i < monitored_.size(); ++i) {
      if (monitored_[i] == pid) {
        auto line = monitors_[i]->read_line();
        if (!line) {
          return "(no down)";
        }
        json j = json::parse(*line);
        return j.value("reason", "(none)") + " " + std::to_string(j.value("reason_kind", -1));
      }
    }
    return "(not monitored)";
  }

  std::string exit_reason_query(pid_t pid) {
    supervisor::control_client q;
    if (!q.connect(n_.rt())) {
      return "(no otpd)";
    }
    auto r = q.request(fmt::format(R"({{"cmd":"exit-reason","pid":{}}})", pid));
    if (!r) {
      return "(no answer)";
    }
    json j = json::parse(*r);
    return j.value("reason", "(none)") + " " + std::to_string(j.value("reason_kind", -1));
  }

  // Every observer of pid agrees on `expected` ("shutdown 5"); the status of
  // path shows it as its last exit while nothing newer happened.
  void expect_all(pid_t pid, const std::string& expected, const std::string& path = "") {
    EXPECT_EQ(event_reason(pid), expected) << "event of pid " << pid << "\n" << n_.log();
    EXPECT_EQ(down_reason(pid), expected) << "DOWN of pid " << pid;
    EXPECT_EQ(exit_reason_query(pid), expected) << "exit-reason of pid " << pid;
    if (!path.empty()) {
      std::string text = expected.substr(0, expected.rfind(' '));
      EXPECT_EQ(otpd_node::find(n_.status(), path)["last_exit"], text) << path;
    }
  }

 private:
  otpd_node& n_;
  supervisor::control_client events_;
  std::vector<std::unique_ptr<supervisor::control_client>> monitors_;
  std::vector<pid_t> monitored_;
  std::map<pid_t, std::string> exited_;
};

TEST(ExitReasons, StopAndRestartByTheOperatorEndWithShutdown) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a") + sleeper("b")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b");
  ASSERT_GT(b, 0) << n.log();
  observers o(n);
  o.monitor(a);
  o.monitor(b);
  ASSERT_EQ(n.ctl("stop a"), 0);
  ASSERT_TRUE(n.wait_state("a", "stopped"));
  o.expect_all(a, "shutdown 5", "a");
  ASSERT_EQ(n.ctl("restart b"), 0);
  ASSERT_GT(n.wait_running("b", b), 0);
  o.expect_all(b, "shutdown 5");
}

TEST(ExitReasons, OneForAllSiblingsEndWithShutdownAndTheKilledOneKeepsKilled) {
  otpd_node n;
  n.start(root_yaml("one_for_all", sleeper("a") + sleeper("b") + sleeper("c"), 10));
  pid_t a = n.wait_running("a"), b = n.wait_running("b"), c = n.wait_running("c");
  ASSERT_GT(c, 0) << n.log();
  observers o(n);
  for (pid_t p : {a, b, c}) {
    o.monitor(p);
  }
  shell_kill(b);
  ASSERT_GT(n.wait_running("c", c), 0) << n.log();
  o.expect_all(b, "killed 4");
  o.expect_all(c, "shutdown 5");
  o.expect_all(a, "shutdown 5");
}

TEST(ExitReasons, AChildIgnoringTheStopSignalIsKilledAtTheTimeout) {
  otpd_node n;
  n.start(
      root_yaml("one_for_one", fmt::format("    - {{id: deaf, command: [{}, ignore-term, sleep], "
                                           "shutdown: 300}}\n",
                                           otpd_node::child()) +
                                   sleeper("brutal", ", shutdown: brutal_kill")));
  pid_t deaf = n.wait_running("deaf"), brutal = n.wait_running("brutal");
  ASSERT_GT(brutal, 0) << n.log();
  observers o(n);
  o.monitor(deaf);
  o.monitor(brutal);
  ASSERT_EQ(n.ctl("stop deaf"), 0);
  ASSERT_TRUE(n.wait_state("deaf", "stopped")) << n.log();
  o.expect_all(deaf, "killed 4", "deaf");
  ASSERT_EQ(n.ctl("stop brutal"), 0);
  ASSERT_TRUE(n.wait_state("brutal", "stopped")) << n.log();
  o.expect_all(brutal, "killed 4", "brutal");
}

TEST(ExitReasons, ACrashKeepsItsRealReason) {
  otpd_node n;
  std::string child = otpd_node::child();
  n.start(root_yaml("one_for_one",
                    fmt::format("    - {{id: seg, restart: temporary, command: [{0}, ready, wait, "
                                "300, crash]}}\n"
                                "    - {{id: three, restart: temporary, command: [{0}, wait, 300, "
                                "exit, 3]}}\n",
                                child)));
  ASSERT_TRUE(testing::wait_until([&] {
    json st = n.status();
    return otpd_node::find(st, "seg")["last_exit"] == "signal SIGSEGV" &&
           otpd_node::find(st, "three")["last_exit"] == "exit 3";
  })) << n.status().dump()
      << "\n"
      << n.log();
  // A SIGTERM from outside (not a stop otpd ordered) stays a signal too.
  otpd_node m;
  m.start(root_yaml("one_for_one", sleeper("t", ", restart: temporary")));
  pid_t t = m.wait_running("t");
  ASSERT_GT(t, 0);
  observers o(m);
  o.monitor(t);
  shell_kill(t, "TERM");
  o.expect_all(t, "signal SIGTERM 2", "t");
}

TEST(ExitReasons, ShutdownOfTheNodeEndsEveryChildWithShutdown) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a") + sleeper("b")));
  pid_t a = n.wait_running("a"), b = n.wait_running("b");
  ASSERT_GT(b, 0) << n.log();
  observers o(n);
  o.monitor(a);
  o.monitor(b);
  n.signal(SIGTERM);
  EXPECT_EQ(o.event_reason(b), "shutdown 5");
  EXPECT_EQ(o.event_reason(a), "shutdown 5");
  EXPECT_EQ(o.down_reason(b), "shutdown 5");
  EXPECT_EQ(o.down_reason(a), "shutdown 5");
  EXPECT_EQ(n.wait_exit(), 0);
}

TEST(ExitReasons, StopAsGroupSignalsTheHelpersTooAndWithoutItTheyAreKilled) {
  for (bool as_group : {true, false}) {
    SCOPED_TRACE(as_group ? "stop_as_group: true" : "stop_as_group: false");
    otpd_node n;
    std::string child = otpd_node::child();
    std::string helper_term = n.dir() + "/helper.term", main_term = n.dir() + "/main.term";
    std::string helper_pid = n.dir() + "/helper.pid", main_pid = n.dir() + "/main.pid";
    n.start(root_yaml(
        "one_for_one",
        fmt::format("    - id: w\n      shell: true\n      shutdown: 20000\n"
                    "      stop_as_group: {}\n"
                    // Each writes its pidfile once its SIGTERM handler is in place,
                    // so the stop below cannot come before it.
                    "      command: \"{} on-term {} pidfile {} sleep & exec {} on-term {} pidfile "
                    "{} sleep\"\n",
                    as_group, testing::shell_quote(child), helper_term, helper_pid,
                    testing::shell_quote(child), main_term, main_pid)));
    pid_t w = n.wait_running("w");
    ASSERT_GT(w, 0) << n.log();
    ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(helper_pid).empty(); }));
    ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(main_pid).empty(); }));
    pid_t helper = std::stoi(testing::read_file(helper_pid));
    observers o(n);
    o.monitor(w);
    ASSERT_EQ(n.ctl("stop w"), 0);
    ASSERT_TRUE(n.wait_state("w", "stopped")) << n.log();
    o.expect_all(w, "shutdown 5", "w");
    EXPECT_EQ(testing::read_file(main_term), "term\n");
    if (!as_group) {
      EXPECT_EQ(testing::read_file(helper_term), "");  // never signalled: killed at the end
    }
    // With stop_as_group the helper is sent SIGTERM too, and in cgroup mode
    // it gets the rest of the shutdown timeout after the main process has
    // exited: its own handling of SIGTERM is seen. (In pgroup mode the group
    // is killed when the main process is reaped: a race, not asserted.)
    if (as_group && n.status().value("containment", "") == "cgroup") {
      EXPECT_EQ(testing::read_file(helper_term), "term\n");
    }
    EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(helper); }));
  }
}

// otpctl kill of a nested supervisor is OTP's exit(Sup, kill): every
// worker under it (and what it started) is killed at once, without waiting
// out the shutdown timeout of one that ignores SIGTERM, all with `killed`;
// the supervisor ends with `killed` and its parent restarts it.
class NestedKill : public ::testing::TestWithParam<std::string> {};

TEST_P(NestedKill, KillOfANestedSupervisorKillsItsSubtreeAndItsParentRestartsIt) {
  const std::string& mode = GetParam();
  otpd_node n;
  std::string child = otpd_node::child();
  std::string helper_file = n.dir() + "/helper.pid";
  n.start(fmt::format("supervisor:\n  strategy: one_for_one\n  max_restarts: 5\n  max_seconds: 10\n"
                      "  children:\n{}"
                      "    - id: pool\n      strategy: one_for_one\n      children:\n"
                      "        - {{id: deaf, shutdown: 2000, command: [sh, -c, 'sleep 1000 & echo "
                      "$! > \"{}\"; exec \"{}\" ignore-term sleep']}}\n"
                      "        - id: inner\n          strategy: one_for_all\n          children:\n"
                      "            - {{id: v, command: [{}, sleep]}}\n",
                      sleeper("top"), helper_file, child, child),
          /*wait_ready=*/false, {"--containment", mode});
  ASSERT_TRUE(testing::wait_until([&] { return !n.status().is_null() || n.wait_exit(0ms) >= 0; }))
      << n.log();
  if (mode == "cgroup" && n.log().find("unable to use cgroups") != std::string::npos) {
    EXPECT_FALSE(testing::cgroup_mode_expected())
        << "root with a cgroup v2 hierarchy mounted, yet otpd could not use cgroups:\n"
        << n.log();
    GTEST_SKIP() << "no writable cgroup v2 hierarchy with cgroup.kill (needs root or a "
                    "delegated subtree)\n"
                 << n.log();
  }
  pid_t top = n.wait_running("top");
  pid_t deaf = n.wait_running("pool/deaf"), v = n.wait_running("pool/inner/v");
  ASSERT_GT(v, 0) << n.log();
  pid_t helper = -1;
  ASSERT_TRUE(testing::wait_until([&] {
    helper = std::atoi(testing::read_file(helper_file).c_str());
    return helper > 0;
  }));
  observers o(n);
  o.monitor(deaf);
  o.monitor(v);

  std::string out;
  EXPECT_NE(n.ctl("kill -s TERM pool", &out), 0);  // only SIGKILL means anything here
  EXPECT_NE(out.find("only SIGKILL"), std::string::npos) << out;
  EXPECT_NE(n.ctl("kill /", &out), 0);
  ASSERT_EQ(n.ctl("kill pool", &out), 0) << out;

  ASSERT_GT(n.wait_running("pool/deaf", deaf), 0) << n.log();
  ASSERT_GT(n.wait_running("pool/inner/v", v), 0) << n.log();
  o.expect_all(deaf, "killed 4");
  o.expect_all(v, "killed 4");
  EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(helper); }))
      << "helper " << helper << " of pool/deaf outlived the kill";
  json st = n.status();
  EXPECT_EQ(otpd_node::find(st, "pool")["last_exit"], "killed");
  EXPECT_EQ(otpd_node::find(st, "pool")["restarts"], 1);
  EXPECT_EQ(otpd_node::find(st, "pool/inner")["last_exit"], "killed");
  EXPECT_EQ(n.pid_of("top"), top);
  EXPECT_NE(n.log().find("pool supervisor_stopped: killed"), std::string::npos) << n.log();
  // Killed at once: no stop signal, no shutdown timeout waited out.
  EXPECT_EQ(n.log().find("after its shutdown timeout"), std::string::npos) << n.log();
}

INSTANTIATE_TEST_SUITE_P(Modes, NestedKill, ::testing::Values("cgroup", "pgroup"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace otpd::itest

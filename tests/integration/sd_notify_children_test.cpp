// sd_notify from children: otpd as the service manager of its own children
// (docs/ARCHITECTURE.md "sd_notify from children"). Children get
// NOTIFY_SOCKET (an abstract address of this otpd) and become ready by
// READY=1, keep a watchdog with WATCHDOG=1, report STATUS=; datagrams are
// mapped to a child by the sender's kernel credentials, so a stranger's (the
// test's own) are dropped, and garbage leaves otpd serving. Every test runs
// in both containment modes, where a process of a worker is found
// differently (its cgroup, or its process group and descendants).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/supervisor/control_client.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// One variable of a process's environment ("" when absent).
std::string env_of(pid_t pid, const std::string& key) {
  std::string env = testing::read_file(fmt::format("/proc/{}/environ", pid));
  std::string needle = key + "=";
  std::size_t at = 0;
  while (at < env.size()) {
    std::size_t end = env.find('\0', at);
    if (end == std::string::npos) {
      end = env.size();
    }
    if (env.compare(at, needle.size(), needle) == 0) {
      return env.substr(at + needle.size(), end - at - needle.size());
    }
    at = end + 1;
  }
  return {};
}

int fd_count(pid_t pid) {
  std::error_code ec;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// Sends data to an sd_notify address from this process, with fds (if any)
// as SCM_RIGHTS.
void send_to(const std::string& address, const std::string& data,
             const std::vector<int>& fds = {}) {
  // An oversized datagram may be refused by our own send buffer (EMSGSIZE):
  // then it never reached otpd, which is fine for what the tests check.
  if (int e = testing::send_datagram(address, data, fds); e != 0) {
    EXPECT_EQ(e, EMSGSIZE) << std::strerror(e);
  }
}

class SdNotifyChildren : public ::testing::TestWithParam<std::string> {
 protected:
  [[nodiscard]] bool cgroup_mode() const { return GetParam() == "cgroup"; }

  // Starts n in this mode; false (the test then skips) when the cgroup mode
  // cannot be had here.
  bool start(const std::string& yaml) {
    n.start(yaml, /*wait_ready=*/false, {"--containment", GetParam()});
    bool up = testing::wait_until([&] { return !n.status().is_null() || n.wait_exit(0ms) >= 0; });
    if (cgroup_mode() && n.log().find("unable to use cgroups") != std::string::npos) {
      EXPECT_FALSE(testing::cgroup_mode_expected())
          << "root with a cgroup v2 hierarchy mounted, yet otpd could not use cgroups:\n"
          << n.log();
      return false;
    }
    EXPECT_TRUE(up) << n.log();
    EXPECT_EQ(n.status().value("containment", ""), GetParam()) << n.log();
    return up;
  }

  // The events otpd keeps, as one JSON array.
  [[nodiscard]] json events() const {
    std::string out;
    EXPECT_EQ(n.ctl("events", &out), 0) << out;
    json all = json::array();
    std::size_t at = 0;
    while (at < out.size()) {
      auto nl = out.find('\n', at);
      std::string line = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
      at = nl == std::string::npos ? out.size() : nl + 1;
      json e = json::parse(line, nullptr, false);
      if (e.is_object()) {
        all.push_back(std::move(e));
      }
    }
    return all;
  }
  [[nodiscard]] bool has_event(const std::string& type, pid_t pid) const {
    for (const auto& e : events()) {
      if (e.value("event", "") == type && e.value("pid", -1) == pid) {
        return true;
      }
    }
    return false;
  }
  [[nodiscard]] json event_of(const std::string& type, pid_t pid) const {
    for (const auto& e : events()) {
      if (e.value("event", "") == type && e.value("pid", -1) == pid) {
        return e;
      }
    }
    return nullptr;
  }
  // Waits until `starting` with a pid; returns it (or -1).
  pid_t wait_starting(const std::string& path) {
    pid_t pid = -1;
    testing::wait_until([&] {
      json c = otpd_node::find(n.status(), path);
      if (c.is_null() || c["state"] != "starting" || c["pid"].is_null()) {
        return false;
      }
      pid = c["pid"].get<pid_t>();
      return true;
    });
    return pid;
  }
  bool log_has(const std::string& text) {
    return testing::wait_until([&] { return n.log().find(text) != std::string::npos; });
  }
  // A child that ended by its watchdog: replaced, with reason liveness_failed
  // (abnormal: counted by the root's intensity), and the event says why.
  void expect_watchdog_restart(const std::string& path, pid_t old, const std::string& why) {
    pid_t fresh = n.wait_running(path, old);
    ASSERT_GT(fresh, 0) << n.log();
    json st = n.status();
    json c = otpd_node::find(st, path);
    EXPECT_EQ(c["last_exit"], "liveness_failed") << c.dump();
    EXPECT_GE(c["restarts"].get<int>(), 1) << c.dump();
    EXPECT_GE(st["intensity"]["used"].get<int>(), 1) << st.dump();
    json killed = event_of("liveness_failed", old);
    ASSERT_FALSE(killed.is_null()) << events().dump();
    EXPECT_NE(killed.value("detail", "").find(why), std::string::npos) << killed.dump();
    bool exited = false;
    for (const auto& e : events()) {
      exited = exited || (e.value("event", "") == "exited" && e.value("pid", -1) == old &&
                          e.value("reason", "") == "liveness_failed");
    }
    EXPECT_TRUE(exited) << events().dump();
  }

  [[nodiscard]] static std::string child() { return otpd_node::child(); }

  otpd_node n;
};

#define START_OR_SKIP(yaml)                                                                \
  do {                                                                                     \
    if (!start(yaml)) {                                                                    \
      GTEST_SKIP() << "no writable cgroup v2 hierarchy with cgroup.kill (needs root or a " \
                      "delegated subtree): the cgroup mode cannot run here\n"              \
                   << n.log();                                                             \
    }                                                                                      \
  } while (0)

TEST_P(SdNotifyChildren, ReadyOnlyAfterReadyDatagramWithStatus) {
  std::string go = n.dir() + "/go";
  // The worker waits for the test's word, then execs the test child, which
  // sends READY=1 and STATUS= from the worker's own pid.
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format(
          "    - {{id: w, readiness: sd_notify, start_timeout: 60000, command: [/bin/sh, "
          "-c, 'while [ ! -e {} ]; do sleep 0.02; done; exec \"{}\" notify \"READY=1\\nSTATUS="
          "serving 3 clients\" sleep']}}\n",
          go, child())));
  pid_t pid = wait_starting("w");
  ASSERT_GT(pid, 0) << n.log();
  // It speaks to this otpd: the abstract socket, otpd as its manager, and no
  // watchdog.
  std::string sock = env_of(pid, "NOTIFY_SOCKET");
  EXPECT_EQ(sock.rfind("@otpd-notify-", 0), 0u) << sock;
  EXPECT_EQ(env_of(pid, "MANAGERPID"), std::to_string(n.pid()));
  EXPECT_EQ(env_of(pid, "WATCHDOG_USEC"), "");
  EXPECT_NE(n.log().find("notify socket for children at " + sock), std::string::npos) << n.log();
  // Exec'd and well past it: still starting, no ready event.
  EXPECT_FALSE(testing::wait_until([&] { return n.state_of("w") != "starting"; }, 500ms));
  EXPECT_FALSE(has_event("ready", pid)) << events().dump();
  std::ofstream(go) << "x";
  EXPECT_EQ(n.wait_running("w"), pid) << n.log();
  EXPECT_TRUE(has_event("ready", pid)) << events().dump();
  json c = otpd_node::find(n.status(), "w");
  EXPECT_EQ(c.value("notify_status", ""), "serving 3 clients") << c.dump();
  EXPECT_EQ(c["restarts"], 0);
  std::string out;
  ASSERT_EQ(n.ctl("status", &out), 0) << out;
  EXPECT_NE(out.find("status: serving 3 clients"), std::string::npos) << out;
}

TEST_P(SdNotifyChildren, ExtendTimeoutUsecExtendsTheStartTimeout) {
  // Asks for 5 s more, is ready after 1.5 s: past its 700 ms start timeout,
  // which would otherwise fail the start (and with it the root's start,
  // and otpd).
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: late, readiness: sd_notify, start_timeout: 700, command: [{}, "
                  "notify, EXTEND_TIMEOUT_USEC=5000000, wait, 1500, notify, READY=1, sleep]}}\n",
                  child())));
  pid_t late = n.wait_running("late");
  ASSERT_GT(late, 0) << n.log();
  json c = otpd_node::find(n.status(), "late");
  EXPECT_EQ(c["restarts"], 0) << c.dump();
  EXPECT_EQ(n.log().find("otpd late: start failed"), std::string::npos) << n.log();
}

TEST_P(SdNotifyChildren, ProcessesOfTheWorkerSpeakForItUnlessAccessIsMain) {
  // fork: a child of the worker sends READY=1; setsid: one that left the
  // worker's process group (still in its cgroup, still its descendant);
  // main: notify_access main refuses the forked child's word.
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: fork, readiness: sd_notify, command: [{0}, notify-child, READY=1, "
                  "sleep]}}\n"
                  "    - {{id: setsid, readiness: sd_notify, command: [{0}, notify-setsid-child, "
                  "READY=1, sleep]}}\n"
                  "    - {{id: main, readiness: sd_notify, notify_access: main, start_timeout: "
                  "60000, command: [{0}, notify-child, READY=1, sleep]}}\n",
                  child())));
  EXPECT_GT(n.wait_running("fork"), 0) << n.log();
  EXPECT_GT(n.wait_running("setsid"), 0) << n.log();
  pid_t main_pid = wait_starting("main");
  ASSERT_GT(main_pid, 0);
  EXPECT_TRUE(
      log_has(fmt::format("a process of main (pid {}), whose notify_access is main", main_pid)))
      << n.log();
  EXPECT_EQ(n.state_of("main"), "starting");
}

TEST_P(SdNotifyChildren, SystemdNotifyAsTheWorkerOrItsChild) {
  std::string tool = testing::find_program("systemd-notify");
  if (tool.empty()) {
    GTEST_SKIP() << "systemd-notify is not installed (Debian's systemd package has it)";
  }
  // exec: systemd-notify is the worker itself (then exits: what counts is
  // the ready event); script: a shell worker runs it as its child, which
  // sends for its parent, the worker.
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: exec, restart: temporary, readiness: sd_notify, command: [/bin/sh, "
                  "-c, 'exec {0} --ready --status=\"via exec\"']}}\n"
                  "    - {{id: script, readiness: sd_notify, command: [/bin/sh, -c, '{0} --ready "
                  "--status=\"from a script\"; exec \"{1}\" sleep']}}\n",
                  tool, child())));
  pid_t script = n.wait_running("script");
  ASSERT_GT(script, 0) << n.log();
  json c = otpd_node::find(n.status(), "script");
  EXPECT_EQ(c.value("notify_status", ""), "from a script") << c.dump();
  // The exec'd one: its ready event, then its exit (normal: not restarted).
  ASSERT_TRUE(testing::wait_until([&] {
    for (const auto& e : events()) {
      if (e.value("event", "") == "exited" && e.value("path", "") == "exec") {
        return true;
      }
    }
    return false;
  })) << events().dump()
      << n.log();
  bool ready = false;
  for (const auto& e : events()) {
    ready = ready || (e.value("event", "") == "ready" && e.value("path", "") == "exec");
  }
  EXPECT_TRUE(ready) << events().dump() << n.log();
}

TEST_P(SdNotifyChildren, ChildAsNobodyReachesTheSocket) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "running a child as nobody needs root (CI runs this as root)";
  }
  testing::world_exec_copy copy("otpd_test_child");
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: nob, user: nobody, readiness: sd_notify, watchdog_sec: 30, "
                  "command: [{}, notify, READY=1, sleep]}}\n",
                  copy.path())));
  pid_t pid = n.wait_running("nob");
  ASSERT_GT(pid, 0) << n.log();
  struct stat st {};
  ASSERT_EQ(::stat(fmt::format("/proc/{}", pid).c_str(), &st), 0);
  EXPECT_NE(st.st_uid, 0u);  // it does run as nobody
  EXPECT_TRUE(has_event("ready", pid)) << events().dump();
}

TEST_P(SdNotifyChildren, WatchdogMissedEndsTheChildWithLivenessFailed) {
  // Pings for 1 s, then stops: its 0.5 s watchdog ends it; the restarted one
  // does the same, so max_restarts is high.
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: w, readiness: sd_notify, watchdog_sec: 0.5, command: [{}, notify, "
                  "READY=1, pings, 100, 10, sleep]}}\n",
                  child()),
      20, 60));
  pid_t pid = n.wait_running("w");
  ASSERT_GT(pid, 0) << n.log();
  // WATCHDOG_USEC, and WATCHDOG_PID: the child's own pid.
  EXPECT_EQ(env_of(pid, "WATCHDOG_USEC"), "500000");
  EXPECT_EQ(env_of(pid, "WATCHDOG_PID"), std::to_string(pid));
  expect_watchdog_restart("w", pid, "watchdog: no WATCHDOG=1 within 0.500 s");
}

TEST_P(SdNotifyChildren, WatchdogKeptPingingStaysUp) {
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: w, readiness: sd_notify, watchdog_sec: 0.4, command: [{}, notify, "
                  "READY=1, pings, 100, 1000000]}}\n",
                  child())));
  pid_t pid = n.wait_running("w");
  ASSERT_GT(pid, 0) << n.log();
  // Several watchdog intervals: it stays the same process.
  EXPECT_FALSE(testing::wait_until([&] { return n.pid_of("w") != pid; }, 2000ms)) << n.log();
  json c = otpd_node::find(n.status(), "w");
  EXPECT_EQ(c["restarts"], 0) << c.dump();
  EXPECT_FALSE(has_event("liveness_failed", pid));
}

// otpctl reexec hands the notify socket over: the children keep their
// NOTIFY_SOCKET, their pings keep the watchdog fed, what they said stays.
TEST_P(SdNotifyChildren, WatchdogAndStatusGoOnAcrossAReexec) {
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: w, readiness: sd_notify, watchdog_sec: 0.4, command: [{}, notify, "
                  "STATUS=serving, notify, READY=1, pings, 100, 1000000]}}\n",
                  child())));
  pid_t pid = n.wait_running("w");
  ASSERT_GT(pid, 0) << n.log();
  ASSERT_TRUE(testing::wait_until([&] {
    return otpd_node::find(n.status(), "w").value("notify_status", "") == "serving";
  })) << n.log();
  pid_t otpd = n.pid();
  std::string out;
  ASSERT_EQ(n.ctl("reexec", &out), 0) << out << n.log();
  // Several watchdog intervals after the exec: the same process, fed.
  EXPECT_FALSE(testing::wait_until([&] { return n.pid_of("w") != pid; }, 2000ms)) << n.log();
  json st = n.status();
  EXPECT_EQ(st.value("reexecs", 0), 1) << st.dump();
  EXPECT_EQ(n.pid(), otpd);
  json c = otpd_node::find(st, "w");
  EXPECT_EQ(c["restarts"], 0) << c.dump();
  EXPECT_EQ(c.value("notify_status", ""), "serving") << c.dump();
  EXPECT_FALSE(has_event("liveness_failed", pid)) << n.log();
}

TEST_P(SdNotifyChildren, WatchdogTriggerAndWatchdogUsec) {
  // trigger: WATCHDOG=trigger ends it at once (no watchdog_sec needed);
  // usec: WATCHDOG_USEC=300000 shortens its 60 s watchdog, then it is silent.
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format(
          "    - {{id: trigger, readiness: sd_notify, command: [{0}, notify, READY=1, wait, "
          "300, notify, WATCHDOG=trigger, sleep]}}\n"
          "    - {{id: usec, readiness: sd_notify, watchdog_sec: 60, command: [{0}, "
          "notify, READY=1, notify, WATCHDOG_USEC=300000, sleep]}}\n",
          child()),
      200, 60));
  pid_t t = n.wait_running("trigger");
  pid_t u = n.wait_running("usec");
  ASSERT_GT(t, 0) << n.log();
  ASSERT_GT(u, 0) << n.log();
  expect_watchdog_restart("trigger", t, "watchdog: the child sent WATCHDOG=trigger");
  expect_watchdog_restart("usec", u, "watchdog: no WATCHDOG=1 within 0.300 s");
}

TEST_P(SdNotifyChildren, StrangersAndGarbageLeaveOtpdServing) {
  // The child says what otpd must survive: malformed and oversized
  // datagrams, control characters and invalid UTF-8 in STATUS=, STOPPING=1.
  std::string big = "STATUS=" + std::string(5000, 'x');
  START_OR_SKIP(root_yaml(
      "one_for_one",
      fmt::format("    - {{id: w, readiness: sd_notify, command: [{0}, notify, READY=1, notify, "
                  "'no equals sign', notify, 'READY=1\\x00x', notify, '{1}', notify, "
                  "'STATUS=\\x1b[31mred\\xff', notify, STOPPING=1, notify, MAINPID=1, notify, "
                  "ERRNO=5, sleep]}}\n",
                  child(), big)));
  pid_t pid = n.wait_running("w");
  ASSERT_GT(pid, 0) << n.log();
  EXPECT_TRUE(log_has("for w: malformed: line 1 is no KEY=VALUE")) << n.log();
  EXPECT_TRUE(log_has("for w: malformed: a NUL byte in it")) << n.log();
  EXPECT_TRUE(log_has("for w: larger than 4096 bytes")) << n.log();
  EXPECT_TRUE(log_has("says STOPPING=1")) << n.log();
  EXPECT_TRUE(log_has("MAINPID=1: ignored, the worker's pid")) << n.log();
  ASSERT_TRUE(testing::wait_until([&] {
    json c = otpd_node::find(n.status(), "w");
    return c.value("notify_errno", 0) == 5;
  })) << n.status().dump();
  json c = otpd_node::find(n.status(), "w");
  EXPECT_EQ(c.value("notify_status", ""), "?[31mred?") << c.dump();
  EXPECT_EQ(c["state"], "running");

  // The test itself is no child of this otpd: its READY=1 is dropped, and
  // logged. Its fds are closed, however many it sends.
  std::string sock = env_of(pid, "NOTIFY_SOCKET");
  ASSERT_FALSE(sock.empty());
  int fds_before = fd_count(n.pid());
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  send_to(sock, "READY=1", {p[0], p[1], p[0]});
  EXPECT_TRUE(
      log_has(fmt::format("dropped a datagram from pid {} (uid {}): not a process of any "
                          "child of this otpd",
                          ::getpid(), ::getuid())))
      << n.log();
  // Garbage from a stranger: nothing of it counts, nothing of it stays.
  for (int i = 0; i < 200; ++i) {
    std::string junk(static_cast<std::size_t>(i * 37 % 5000 + 1), static_cast<char>(i));
    send_to(sock, junk, i % 10 == 0 ? std::vector<int>{p[0], p[1]} : std::vector<int>{});
  }
  send_to(sock, std::string(100000, 'z'));
  ::close(p[0]);
  ::close(p[1]);
  // otpd still answers: a ping on its control socket, and status.
  {
    supervisor::control_client cc;
    ASSERT_TRUE(cc.connect(n.rt())) << n.log();
    auto pong = cc.call(protocol::ping_request{}.to_json());
    ASSERT_TRUE(pong) << pong.message() << n.log();
    EXPECT_EQ(pong->value("pid", -1), n.pid()) << pong->dump();
  }  // the connection closes: otpd's fds are counted below
  EXPECT_FALSE(n.status().is_null()) << n.log();
  EXPECT_TRUE(testing::wait_until([&] { return fd_count(n.pid()) <= fds_before; }))
      << fd_count(n.pid()) << " fds, " << fds_before << " before";
  EXPECT_EQ(n.pid_of("w"), pid);
  // The flood is logged within a budget, not line by line.
  std::string log = n.log();
  std::size_t drops = 0;
  for (std::size_t at = log.find("dropped a datagram"); at != std::string::npos;
       at = log.find("dropped a datagram", at + 1)) {
    ++drops;
  }
  EXPECT_LT(drops, 40u) << log;
}

INSTANTIATE_TEST_SUITE_P(Modes, SdNotifyChildren, ::testing::Values("cgroup", "pgroup"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace otpd::itest

// otpctl reexec: otpd execs its binary in its own process and takes its
// state over; no worker restarts, and supervision goes on as before. Every
// test runs in both containment modes (as containment_test does): cgroup
// (skipped where no writable cgroup v2 hierarchy can be had) and pgroup.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

class Reexec : public ::testing::TestWithParam<std::string> {
 protected:
  [[nodiscard]] std::vector<std::string> args() const { return {"--containment", GetParam()}; }

  // Starts n in this mode; false (the test then skips) when the cgroup mode
  // cannot be had here.
  bool start(otpd_node& n, const std::string& yaml) {
    n.start(yaml, /*wait_ready=*/false, args());
    bool up = testing::wait_until([&] { return !n.status().is_null() || n.wait_exit(0ms) >= 0; });
    if (GetParam() == "cgroup" && n.log().find("unable to use cgroups") != std::string::npos) {
      EXPECT_FALSE(testing::cgroup_mode_expected())
          << "root with a cgroup v2 hierarchy mounted, yet otpd could not use cgroups:\n"
          << n.log();
      return false;
    }
    EXPECT_TRUE(up) << n.log();
    json st = n.status();
    EXPECT_EQ(st.value("containment", ""), GetParam()) << n.log();
    return !st.is_null();
  }

  // Every worker's pid and restarts, by path (running workers only).
  static void collect(const json& st, std::map<std::string, std::pair<pid_t, int>>& out) {
    if (!st.contains("children")) {
      return;
    }
    for (const auto& c : st["children"]) {
      if (c.value("type", "") != "supervisor" && c["pid"].is_number()) {
        out[c["path"].get<std::string>()] = {c["pid"].get<pid_t>(), c["restarts"].get<int>()};
      }
      collect(c, out);
    }
  }

  // otpctl reexec, then the node answering again.
  static void reexec(otpd_node& n, const std::string& extra = "") {
    std::string out;
    ASSERT_EQ(n.ctl("reexec" + extra, &out), 0) << out << n.log();
    ASSERT_NE(out.find("re-executed"), std::string::npos) << out;
    ASSERT_TRUE(testing::wait_until([&] { return !n.status().is_null(); })) << n.log();
  }
};

#define START_OR_SKIP(n, yaml)                                                             \
  do {                                                                                     \
    if (!start(n, yaml)) {                                                                 \
      GTEST_SKIP() << "no writable cgroup v2 hierarchy with cgroup.kill (needs root or a " \
                      "delegated subtree): the cgroup mode cannot run here\n"              \
                   << n.log();                                                             \
    }                                                                                      \
  } while (0)

std::string tree_yaml(const std::string& dir) {
  std::string c = otpd_node::child();
  return root_yaml("one_for_one",
                   sleeper("a") + sleeper("b") +
                       "    - id: sub\n      strategy: one_for_one\n      max_restarts: 10\n"
                       "      max_seconds: 60\n      children:\n"
                       "        - {id: x, command: [" +
                       c +
                       ", sleep]}\n"
                       "        - {id: y, command: [" +
                       c + ", sleep]}\n" +
                       fmt::format("    - id: out\n      shell: true\n"
                                   "      command: 'i=0; while :; do i=$((i+1)); echo line $i; "
                                   "sleep 0.1; done'\n"
                                   "      stdout: {}/out.log\n",
                                   dir) +
                       sleeper("held"),
                   3, 60);
}

std::size_t lines_of(const std::string& path) {
  std::string s = testing::read_file(path);
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST_P(Reexec, KeepsEveryWorkerAndSupervisesAsBefore) {
  otpd_node n;
  START_OR_SKIP(n, tree_yaml(n.dir()));
  for (const char* p : {"a", "b", "sub/x", "sub/y", "out", "held"}) {
    ASSERT_GT(n.wait_running(p), 0) << p << n.log();
  }
  // One restart before the reexec (it counts in the window after it), and
  // a child an operator stopped.
  pid_t a0 = n.pid_of("a");
  shell_kill(a0);
  ASSERT_GT(n.wait_running("a", a0), 0);
  ASSERT_EQ(n.ctl("stop held"), 0);
  ASSERT_TRUE(n.wait_state("held", "stopped"));
  json before = n.status();
  std::map<std::string, std::pair<pid_t, int>> pids;
  collect(before, pids);
  ASSERT_EQ(pids.size(), 5u) << before.dump(2);
  EXPECT_EQ(before.value("reexecs", -1), 0);

  std::string out_log = n.dir() + "/out.log";
  ASSERT_TRUE(testing::wait_until([&] { return lines_of(out_log) >= 2; }));

  reexec(n);
  json after = n.status();
  ASSERT_FALSE(after.is_null()) << n.log();
  EXPECT_EQ(after["otpd_pid"].get<pid_t>(), n.pid());
  EXPECT_EQ(after.value("reexecs", -1), 1);
  EXPECT_EQ(after.value("binary", ""),
            std::filesystem::canonical(testing::bin_path("otpd")).string());
  std::map<std::string, std::pair<pid_t, int>> now;
  collect(after, now);
  EXPECT_EQ(now, pids) << after.dump(2) << n.log();
  EXPECT_EQ(otpd_node::find(after, "held")["state"], "stopped");
  EXPECT_EQ(otpd_node::find(after, "a")["restarts"], 1);
  EXPECT_EQ(after["intensity"]["used"], 1) << after.dump(2);
  EXPECT_NE(n.log().find("re-executed from"), std::string::npos) << n.log();

  // Captured output still reaches its file.
  std::size_t lines = lines_of(out_log);
  EXPECT_TRUE(testing::wait_until([&] { return lines_of(out_log) >= lines + 3; }))
      << testing::read_file(out_log);

  // Healed as before: a kill -9 restarts the worker with a new pid, the
  // others untouched; in the nested supervisor too.
  shell_kill(pids["b"].first);
  pid_t b1 = n.wait_running("b", pids["b"].first);
  EXPECT_GT(b1, 0) << n.log();
  shell_kill(pids["sub/x"].first);
  EXPECT_GT(n.wait_running("sub/x", pids["sub/x"].first), 0) << n.log();
  EXPECT_EQ(n.pid_of("sub/y"), pids["sub/y"].first);
  EXPECT_EQ(n.pid_of("a"), pids["a"].first);
  // The held child starts again on demand.
  ASSERT_EQ(n.ctl("start held"), 0);
  EXPECT_GT(n.wait_running("held"), 0);

  // The window kept the restart from before the reexec: 1 (a) + 1 (b) so
  // far; two more and the root (max 3 in 60 s) gives up.
  pid_t a1 = n.pid_of("a");
  shell_kill(a1);
  ASSERT_GT(n.wait_running("a", a1), 0);
  shell_kill(n.pid_of("a"));
  EXPECT_GE(n.wait_exit(testing::scaled(15s)), 1) << n.log();
  EXPECT_NE(n.log().find("intensity_exceeded"), std::string::npos) << n.log();
}

TEST_P(Reexec, TwiceInARowAndAnEventsFollowerReconnects) {
  otpd_node n;
  START_OR_SKIP(n, root_yaml("one_for_one", sleeper("a") + sleeper("b")));
  pid_t a = n.wait_running("a");
  ASSERT_GT(a, 0);
  // otpctl events -f in the background, its output in a file.
  std::string out = n.dir() + "/events.out";
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  core::spawn_options o;
  o.argv = {testing::bin_path("otpctl"), "--runtime-dir", n.rt(), "events", "-f"};
  o.fds = {{-1, 0}, {fd, 1}, {fd, 2}};
  auto follower = core::spawn(o);
  ::close(fd);
  ASSERT_TRUE(follower.has_value());
  ASSERT_TRUE(testing::wait_until(
      [&] { return testing::read_file(out).find("\"ready\"") != std::string::npos; }));

  reexec(n);
  reexec(n);
  EXPECT_EQ(n.status().value("reexecs", -1), 2);
  EXPECT_EQ(n.pid_of("a"), a);
  // An event after the reexecs reaches the follower.
  shell_kill(n.pid_of("b"));
  bool seen = testing::wait_until([&] {
    std::string s = testing::read_file(out);
    auto r = s.rfind("\"reexec\"");
    return r != std::string::npos && s.find("\"restarting\"", r) != std::string::npos;
  });
  EXPECT_TRUE(seen) << testing::read_file(out);
  EXPECT_TRUE(testing::process_alive(follower->pid)) << testing::read_file(out);
  (void)core::kill_and_reap(follower->pid, SIGKILL, core::deadline::after(testing::scaled(5s)),
                            follower->pidfd.get());
}

TEST_P(Reexec, RefusedWithAClearErrorAndOtpdGoesOn) {
  otpd_node n;
  std::string c = otpd_node::child();
  START_OR_SKIP(n, root_yaml("one_for_one",
                             sleeper("a") +
                                 // never ready: it stays starting for a minute
                                 fmt::format("    - {{id: slow, command: [{}, sleep], readiness: "
                                             "notify, start_timeout: 60000}}\n",
                                             c)));
  pid_t a = n.wait_running("a");
  ASSERT_GT(a, 0);
  ASSERT_TRUE(n.wait_state("slow", "starting"));
  std::string out;
  EXPECT_EQ(n.ctl("reexec", &out), 1) << out;
  EXPECT_NE(out.find("busy: slow is starting; try again"), std::string::npos) << out;

  EXPECT_EQ(n.ctl("reexec --binary " + n.dir() + "/no-such-otpd", &out), 1) << out;
  EXPECT_NE(out.find("no-such-otpd: No such file or directory: not an executable file"),
            std::string::npos)
      << out;
  EXPECT_EQ(n.ctl("reexec --binary " + n.dir(), &out), 1) << out;
  EXPECT_NE(out.find("not an executable file"), std::string::npos) << out;

  json st = n.status();
  EXPECT_EQ(st.value("reexecs", -1), 0);
  EXPECT_EQ(n.pid_of("a"), a);
  EXPECT_EQ(st["otpd_pid"].get<pid_t>(), n.pid());
}

TEST_P(Reexec, RefusedWhenTheConfigOnDiskChanged) {
  otpd_node n;
  START_OR_SKIP(n, root_yaml("one_for_one", sleeper("a")));
  pid_t a = n.wait_running("a");
  ASSERT_GT(a, 0);
  n.write_config(root_yaml("one_for_one", sleeper("a") + sleeper("b")));
  std::string out;
  EXPECT_EQ(n.ctl("reexec", &out), 1) << out;
  EXPECT_NE(out.find("config changed on disk: run otpctl reload first"), std::string::npos) << out;
  ASSERT_EQ(n.ctl("reload"), 0);
  ASSERT_GT(n.wait_running("b"), 0);
  // An executable that is not an otpd able to read the state: asked first.
  EXPECT_EQ(n.ctl("reexec --binary /bin/true", &out), 1) << out;
  EXPECT_NE(out.find("/bin/true: not an otpd that can take the state over"), std::string::npos)
      << out;
  EXPECT_EQ(n.status().value("reexecs", -1), 0);
  reexec(n);
  EXPECT_EQ(n.pid_of("a"), a);
}

// Under systemd's Type=notify: RELOADING=1 before the exec, READY=1 after,
// and the new process goes on notifying (NOTIFY_SOCKET and the watchdog are
// handed over; children still never see them). The test is the manager.
TEST(ReexecNotify, ReloadingThenReadyAndTheWatchdogGoesOn) {
  otpd_node n;
  std::string path = n.dir() + "/notify";
  core::unique_fd sm(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sm);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  path.copy(sa.sun_path, sizeof sa.sun_path - 1);
  ASSERT_EQ(::bind(sm.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa), 0);
  std::vector<std::string> seen;
  // Datagrams until one holds want (all kept in seen); false on timeout.
  auto until = [&](const std::string& want) {
    auto end = std::chrono::steady_clock::now() + testing::scaled(20s);
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{sm.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) {
        continue;
      }
      char buf[4096];
      ssize_t got = ::recv(sm.get(), buf, sizeof buf, 0);
      if (got <= 0) {
        continue;
      }
      seen.emplace_back(buf, static_cast<std::size_t>(got));
      if (seen.back().find(want) != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "4000000", 1);  // a ping every 2 s: the queue holds ~10
  n.start(root_yaml("one_for_one", sleeper("a")), false, {"--containment", "pgroup"});
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_TRUE(until("READY=1")) << n.log();
  pid_t a = n.wait_running("a");
  ASSERT_GT(a, 0);
  std::string out;
  ASSERT_EQ(n.ctl("reexec", &out), 0) << out << n.log();
  ASSERT_TRUE(until("RELOADING=1")) << n.log();
  ASSERT_TRUE(until("READY=1")) << "no READY=1 after the reexec\n" << n.log();
  seen.clear();
  ASSERT_TRUE(until("WATCHDOG=1")) << "the new process does not ping the watchdog";
  EXPECT_EQ(n.pid_of("a"), a);
  // A child started after the reexec does not get the manager's socket.
  shell_kill(a);
  pid_t a1 = n.wait_running("a", a);
  ASSERT_GT(a1, 0);
  std::string env = testing::read_file("/proc/" + std::to_string(a1) + "/environ");
  EXPECT_EQ(env.find("NOTIFY_SOCKET="), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, Reexec, ::testing::Values("cgroup", "pgroup"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace otpd::itest

// otpd as PID 1 of its own PID namespace, the way a container runs its
// entrypoint: it supervises, reaps every orphan of the namespace (there is
// no init above it), and stops in order on SIGTERM. The namespace comes from
// unshare(1) (util-linux); as root directly, otherwise inside a user
// namespace where we are root.

#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// "NSpid:\t<outer>\t<inner>" of /proc/<pid>/status: the pid as seen from
// each namespace, ours first.
std::vector<pid_t> ns_pids(pid_t pid) {
  std::string st = testing::read_file(fmt::format("/proc/{}/status", pid));
  std::vector<pid_t> out;
  auto at = st.find("NSpid:");
  if (at == std::string::npos) {
    return out;
  }
  std::string line = st.substr(at + 6, st.find('\n', at) - at - 6);
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') {
      ++j;
    }
    if (j > i) {
      out.push_back(std::atoi(line.substr(i, j - i).c_str()));
    }
    i = j;
  }
  return out;
}

// Our pid of the process the namespace calls inner (a worker of this node).
pid_t outer_pid(const otpd_node& n, pid_t inner) {
  for (pid_t p : processes_of(n.rt())) {
    auto ids = ns_pids(p);
    if (ids.size() == 2 && ids[1] == inner) {
      return p;
    }
  }
  return -1;
}

// The launcher's only child: otpd itself.
pid_t otpd_pid(const otpd_node& n) {
  std::string kids = testing::read_file(fmt::format("/proc/{0}/task/{0}/children", n.pid()));
  return kids.empty() ? -1 : std::atoi(kids.c_str());
}

TEST(Pid1, SupervisesReapsOrphansAndStopsInOrderAsInitOfANamespace) {
  otpd_node n;
  std::vector<std::string> launcher = {"unshare", "--pid", "--fork", "--kill-child",
                                       "--mount-proc"};
  if (::geteuid() != 0) {
    launcher.insert(launcher.begin() + 1, {"--user", "--map-root-user"});
  }
  ASSERT_FALSE(testing::sh_output("command -v unshare").empty())
      << "unshare (util-linux) is needed to make a PID namespace";
  // The namespace itself must be possible here: as a user, unprivileged user
  // namespaces may be off (a sysctl, an AppArmor policy, a chroot); in a
  // chroot whose root is not a mount point, even root's unshare cannot make
  // the new mount namespace private for --mount-proc. Where the launcher
  // cannot run `true`, it cannot run otpd: the test does not apply.
  std::string probe;
  for (const auto& a : launcher) {
    probe += testing::shell_quote(a) + " ";
  }
  int probe_status = 0;
  if (std::string out = testing::sh_output(probe + "true 2>&1", &probe_status); probe_status != 0) {
    GTEST_SKIP() << "this machine cannot make a PID namespace with " << probe << ": " << out;
  }
  n.set_launcher(launcher);
  std::string gpath = n.dir() + "/orphan";
  // Process groups: in cgroup mode the grandchild would die with its worker
  // (containment_test.cpp); here it must outlive it and be reaped by PID 1.
  n.start(root_yaml("one_for_one",
                    sleeper("a") + fmt::format("    - {{id: o, restart: temporary, command: [{}, "
                                               "grandchild-setsid, {}, wait, '100', exit, '3']}}\n",
                                               otpd_node::child(), gpath),
                    10),
          true, {"--containment", "pgroup"});
  pid_t daemon = otpd_pid(n);
  ASSERT_GT(daemon, 0);
  auto ids = ns_pids(daemon);
  ASSERT_EQ(ids.size(), 2u) << "otpd is not in a namespace of its own";
  EXPECT_EQ(ids[1], 1) << "otpd is not PID 1 of its namespace";

  // A worker killed from our shell comes back.
  pid_t a_inner = n.wait_running("a");
  ASSERT_GT(a_inner, 0);
  pid_t a = outer_pid(n, a_inner);
  ASSERT_GT(a, 0);
  shell_kill(a);
  pid_t a2 = n.wait_running("a", a_inner);
  EXPECT_GT(a2, 0) << n.log();

  // The grandchild outlives its parent: re-parented to PID 1 (otpd), which
  // reaps it when it dies: no zombie is left in the namespace.
  ASSERT_TRUE(n.wait_state("o", "failed")) << n.log();
  pid_t orphan_inner = std::atoi(testing::read_file(gpath).c_str());
  ASSERT_GT(orphan_inner, 0);
  pid_t orphan = outer_pid(n, orphan_inner);
  ASSERT_GT(orphan, 0);
  std::string stat = testing::read_file(fmt::format("/proc/{}/stat", orphan));
  pid_t ppid = std::atoi(stat.substr(stat.rfind(')') + 4).c_str());
  EXPECT_EQ(ppid, daemon);
  shell_kill(orphan);
  EXPECT_TRUE(testing::wait_until([&] { return testing::process_state(orphan) == 0; }))
      << "the orphan was not reaped by PID 1";
  EXPECT_EQ(n.state_of("a"), "running");

  // SIGTERM to PID 1 from outside: an orderly stop, status 0, and nothing
  // of the namespace left.
  shell_kill(daemon, "TERM");
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
  EXPECT_TRUE(testing::wait_until([&] { return processes_of(n.rt()).empty(); }));
}

}  // namespace
}  // namespace otpd::itest

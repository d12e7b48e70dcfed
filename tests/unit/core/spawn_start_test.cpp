// spawn_start(): fork without waiting for exec; the exec outcome is read
// later from the error pipe, as the daemon's loop does.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/testing/testing.hpp>

namespace core = otpd::core;
namespace t = otpd::testing;

namespace {

// Waits (poll, no sleep) until the error pipe says something final.
core::exec_outcome await_outcome(int fd, int* err) {
  auto timeout = t::scaled(std::chrono::milliseconds(5000));
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    return core::exec_outcome::pending;
  }
  return core::read_exec_outcome(fd, err);
}

core::exit_reason wait_pid(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return core::exit_reason::from_wait_status(status);
}

}  // namespace

TEST(SpawnStart, EofMeansExecHappened) {
  auto s = core::spawn_start({.argv = {t::bin_path("otpd_test_child"), "exit", "4"}});
  ASSERT_TRUE(s) << s.error().message();
  int err = -1;
  EXPECT_EQ(await_outcome(s->exec_fd.get(), &err), core::exec_outcome::exec_ok);
  EXPECT_EQ(err, -1);  // untouched on success
  EXPECT_EQ(wait_pid(s->pid), core::exit_reason::code(4));
}

TEST(SpawnStart, ExecFailureArrivesAsErrnoAndTheChildExits127) {
  int before = t::count_open_fds();
  // A path that cannot exist: /proc/self/ holds only what the kernel puts
  // there (Debian's /nonexistent, nobody's home, exists wherever a program
  // running as nobody, or root, made it).
  auto s = core::spawn_start({.argv = {"/proc/self/nonexistent/program"}});
  ASSERT_TRUE(s) << s.error().message();
  int err = 0;
  EXPECT_EQ(await_outcome(s->exec_fd.get(), &err), core::exec_outcome::failed);
  EXPECT_EQ(err, ENOENT);
  EXPECT_EQ(wait_pid(s->pid), core::exit_reason::code(127));
  s->exec_fd.reset();
  EXPECT_TRUE(t::zombie_children().empty());
  EXPECT_EQ(t::count_open_fds(), before);
}

TEST(SpawnStart, SetupFailureIsReportedLikeAnExecFailure) {
  auto s = core::spawn_start(
      {.argv = {t::bin_path("otpd_test_child"), "exit", "0"}, .cwd = "/proc/self/nonexistent/dir"});
  ASSERT_TRUE(s);
  int err = 0;
  EXPECT_EQ(await_outcome(s->exec_fd.get(), &err), core::exec_outcome::failed);
  EXPECT_EQ(err, ENOENT);
  EXPECT_EQ(wait_pid(s->pid), core::exit_reason::code(127));
}

TEST(SpawnStart, ReturnsBeforeTheChildExecsAndKeepsTheChildSetUp) {
  // Many starts back to back without reading any outcome: none blocks, each
  // child is its own process group leader, and every one execs.
  std::vector<core::started_spawn> kids;
  for (int i = 0; i < 20; ++i) {
    auto s = core::spawn_start({.argv = {t::bin_path("otpd_test_child"), "sleep"}});
    ASSERT_TRUE(s) << s.error().message();
    kids.push_back(std::move(*s));
  }
  for (auto& k : kids) {
    EXPECT_EQ(await_outcome(k.exec_fd.get(), nullptr), core::exec_outcome::exec_ok);
    EXPECT_EQ(::getpgid(k.pid), k.pid);
  }
  for (auto& k : kids) {
    ::kill(k.pid, SIGKILL);
    EXPECT_EQ(wait_pid(k.pid).kind, core::exit_kind::killed);
  }
  EXPECT_TRUE(t::zombie_children().empty());
}

TEST(SpawnStart, PendingWhileNothingHasBeenWritten) {
  // A pipe nobody writes to or closes reads as pending, not as EOF.
  auto p = core::make_pipe(O_NONBLOCK);
  ASSERT_TRUE(p);
  EXPECT_EQ(core::read_exec_outcome(p->read.get(), nullptr), core::exec_outcome::pending);
  p->write.reset();
  EXPECT_EQ(core::read_exec_outcome(p->read.get(), nullptr), core::exec_outcome::exec_ok);
}

TEST(SpawnStart, RejectsAnEmptyArgv) {
  auto s = core::spawn_start({});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), core::errc::invalid_argument);
}

TEST(SpawnStartVfork, ExecsWithTheSameSetUpAsFork) {
  auto s = core::spawn_start({.argv = {t::bin_path("otpd_test_child"), "sleep"}},
                             core::spawn_method::vfork);
  ASSERT_TRUE(s) << s.error().message();
  // (With vfork the outcome is already there; AddressSanitizer builds fork.)
  EXPECT_EQ(await_outcome(s->exec_fd.get(), nullptr), core::exec_outcome::exec_ok);
  EXPECT_EQ(::getpgid(s->pid), s->pid);
  ::kill(s->pid, SIGKILL);
  EXPECT_EQ(wait_pid(s->pid).kind, core::exit_kind::killed);
}

TEST(SpawnStartVfork, ExecFailureArrivesAsErrnoAndLeavesTheCallerIntact) {
  int before = t::count_open_fds();
  std::string keep = "the caller's memory is not touched by the child";
  auto s = core::spawn_start({.argv = {"no-such-program-anywhere"}}, core::spawn_method::vfork);
  ASSERT_TRUE(s) << s.error().message();
  int err = 0;
  EXPECT_EQ(await_outcome(s->exec_fd.get(), &err), core::exec_outcome::failed);
  EXPECT_EQ(err, ENOENT);
  EXPECT_EQ(wait_pid(s->pid), core::exit_reason::code(127));
  EXPECT_EQ(keep, "the caller's memory is not touched by the child");
  s->exec_fd.reset();
  EXPECT_EQ(t::count_open_fds(), before);
  EXPECT_TRUE(t::zombie_children().empty());
}

TEST(SpawnStartVfork, PlacesFdsAndEnvironment) {
  t::temp_dir dir;
  std::string out = dir.path() + "/out";
  auto s = core::spawn_start({.argv = {"/bin/sh", "-c", "echo \"$GREETING\" > " + out},
                              .env = {"GREETING=hello", "PATH=/usr/bin:/bin"},
                              .inherit_env = false,
                              .fds = {{-1, 0}}},
                             core::spawn_method::vfork);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(wait_pid(s->pid), core::exit_reason::normal());
  EXPECT_EQ(t::read_file(out), "hello\n");
}

namespace {

// A fresh cgroup v2 directory under our own cgroup, removed at the end;
// empty path where none can be made (no v2 hierarchy, not root).
class temp_cgroup {
 public:
  temp_cgroup() {
    std::string own;
    std::istringstream cg(t::read_file("/proc/self/cgroup"));
    for (std::string line; std::getline(cg, line);) {
      if (line.rfind("0::", 0) == 0) {
        own = line.substr(3) == "/" ? "" : line.substr(3);
      }
    }
    std::istringstream mi(t::read_file("/proc/self/mountinfo"));
    for (std::string line; std::getline(mi, line);) {
      auto dash = line.find(" - cgroup2 ");
      if (dash == std::string::npos) {
        continue;
      }
      std::istringstream f(line);
      std::string id, parent, dev, root, point;
      f >> id >> parent >> dev >> root >> point;
      if (root != "/") {
        continue;
      }
      std::string dir = point + own + "/otpd-spawn-test-" + std::to_string(::getpid());
      if (::mkdir(dir.c_str(), 0755) == 0) {
        path_ = dir;
        rel_ = own + "/otpd-spawn-test-" + std::to_string(::getpid());
        return;
      }
    }
  }
  ~temp_cgroup() {
    if (!path_.empty()) {
      ::rmdir(path_.c_str());
    }
  }
  temp_cgroup(const temp_cgroup&) = delete;
  temp_cgroup& operator=(const temp_cgroup&) = delete;
  temp_cgroup(temp_cgroup&&) = delete;
  temp_cgroup& operator=(temp_cgroup&&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  // As /proc/PID/cgroup names it.
  [[nodiscard]] const std::string& relative() const { return rel_; }

 private:
  std::string path_, rel_;
};

std::string cgroup_of(pid_t pid) {
  std::istringstream cg(t::read_file("/proc/" + std::to_string(pid) + "/cgroup"));
  for (std::string line; std::getline(cg, line);) {
    if (line.rfind("0::", 0) == 0) {
      return line.substr(3);
    }
  }
  return {};
}

}  // namespace

// clone3 CLONE_INTO_CGROUP (vfork-like and fork-like), and the fallback that
// writes cgroup.procs in the child: the child runs in the cgroup by exec.
TEST(SpawnStart, IntoACgroupByClone3OrByTheProcsWrite) {
  temp_cgroup cg;
  if (cg.path().empty()) {
    GTEST_SKIP() << "no cgroup v2 directory can be made here (needs root or a delegated subtree)";
  }
  core::unique_fd dir(::open(cg.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  for (auto method : {core::spawn_method::vfork, core::spawn_method::fork}) {
    for (bool via_procs : {false, true}) {
      SCOPED_TRACE(std::string(method == core::spawn_method::vfork ? "vfork" : "fork") +
                   (via_procs ? ", cgroup.procs write" : ", clone3"));
      core::spawn_options o{.argv = {t::bin_path("otpd_test_child"), "sleep"}};
      o.cgroup_fd = dir.get();
      o.cgroup_procs = cg.path() + "/cgroup.procs";
      o.cgroup_via_procs = via_procs;
      auto s = core::spawn_start(o, method);
      ASSERT_TRUE(s) << s.error().message();
      int err = 0;
      EXPECT_EQ(await_outcome(s->exec_fd.get(), &err), core::exec_outcome::exec_ok) << err;
      EXPECT_EQ(cgroup_of(s->pid), cg.relative());
      ::kill(s->pid, SIGKILL);
      EXPECT_EQ(wait_pid(s->pid), core::exit_reason::from_signal(SIGKILL));
    }
  }
  // A cgroup that cannot be joined: the spawn fails, nothing runs.
  core::spawn_options bad{.argv = {t::bin_path("otpd_test_child"), "sleep"}};
  bad.cgroup_procs = cg.path() + "/no-such-dir/cgroup.procs";
  auto s = core::spawn_start(bad, core::spawn_method::vfork);
  ASSERT_TRUE(s) << s.error().message();
  int err = 0;
  EXPECT_EQ(await_outcome(s->exec_fd.get(), &err), core::exec_outcome::failed);
  EXPECT_EQ(err, ENOENT);
  EXPECT_EQ(wait_pid(s->pid), core::exit_reason::code(127));
}

// pid_env: the child's own pid in its environment (sd_notify's
// WATCHDOG_PID), written by the child after the fork, whatever env said.
TEST(SpawnStart, PidEnvHoldsTheChildsOwnPid) {
  for (auto method : {core::spawn_method::fork, core::spawn_method::vfork}) {
    t::temp_dir dir;
    std::string out = dir.path() + "/out";
    auto s = core::spawn_start({.argv = {"/bin/sh", "-c", "echo \"$MY_PID $$\" > " + out},
                                .env = {"MY_PID=1", "PATH=/usr/bin:/bin", "MY_PID=2"},
                                .inherit_env = false,
                                .fds = {{-1, 0}},
                                .pid_env = "MY_PID"},
                               method);
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(wait_pid(s->pid), core::exit_reason::normal());
    EXPECT_EQ(t::read_file(out), std::to_string(s->pid) + " " + std::to_string(s->pid) + "\n");
  }
}

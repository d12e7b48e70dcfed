#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/ready.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/testing/testing.hpp>

namespace core = otpd::core;
namespace t = otpd::testing;
using namespace std::chrono_literals;

namespace {
core::exit_reason wait_exit(const core::spawned& s) {
  auto e = core::reap(s.pidfd.get());
  return core::exit_reason::from_siginfo(e.code, e.status);
}
}  // namespace

TEST(Spawn, ReportsExitCodes) {
  auto s = core::spawn({.argv = {t::bin_path("otpd_test_child"), "exit", "3"}});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(wait_exit(*s), core::exit_reason::code(3));
}

TEST(Spawn, ExecFailureIsAnErrorNotAChild) {
  int before = t::count_open_fds();
  // A path that cannot exist: /proc/self/ holds only what the kernel puts
  // there (Debian's /nonexistent, nobody's home, exists wherever a program
  // running as nobody, or root, made it).
  auto s = core::spawn({.argv = {"/proc/self/nonexistent/program"}});
  ASSERT_FALSE(s);
  // The child's errno, as a value: in the exec category, comparable to errc.
  EXPECT_EQ(s.error(), core::exec_error(ENOENT));
  EXPECT_EQ(s.error().value(), ENOENT);
  EXPECT_EQ(s.error(), std::errc::no_such_file_or_directory);
  EXPECT_EQ(s.message(),
            "unable to exec /proc/self/nonexistent/program: No such file or directory");
  EXPECT_TRUE(t::zombie_children().empty());
  EXPECT_EQ(t::count_open_fds(), before);
}

// A failed set-up step is named, so that "Permission denied" says whether
// the exec, a limit or the switch of user was refused.
TEST(Spawn, AFailedSetUpStepIsNamed) {
  core::spawn_options o{.argv = {t::bin_path("otpd_test_child"), "exit", "0"}};
  // A soft limit above the hard one: setrlimit's EINVAL, whoever we are.
  o.rlimits.push_back({RLIMIT_CORE, 2, 1});
  auto s = core::spawn(o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), core::exec_error(EINVAL));
  EXPECT_EQ(s.message(), "unable to start " + t::bin_path("otpd_test_child") +
                             ": setrlimit (rlimits): Invalid argument");
  o.rlimits.clear();
  o.cwd = "/proc/self/nonexistent/dir";
  s = core::spawn(o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "unable to start " + t::bin_path("otpd_test_child") +
                             ": chdir (cwd): No such file or directory");
  EXPECT_TRUE(t::zombie_children().empty());
}

// rlimits, umask and nice reach the exec'd program.
TEST(Spawn, LimitsUmaskAndNiceReachTheProgram) {
  t::temp_dir dir;
  std::string out = dir.path() + "/report";
  core::spawn_options o{.argv = {"/bin/sh", "-c",
                                 "{ umask; grep 'Max core' /proc/self/limits | tr -s ' ' | cut "
                                 "-d' ' -f5,6; cut -d' ' -f19 /proc/self/stat; } > " +
                                     out}};
  o.rlimits.push_back({RLIMIT_CORE, 0, 4096 * 1024});
  o.umask = 027;
  int mine = ::getpriority(PRIO_PROCESS, 0);
  o.nice = mine < 19 ? mine + 1 : 19;
  auto s = core::spawn(o);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(wait_exit(*s), core::exit_reason::normal());
  EXPECT_EQ(t::read_file(out), "0027\n0 4194304\n" + std::to_string(*o.nice) + "\n");
}

TEST(Spawn, ChildLeadsItsOwnProcessGroup) {
  auto s = core::spawn({.argv = {t::bin_path("otpd_test_child"), "sleep"}});
  ASSERT_TRUE(s);
  EXPECT_EQ(::getpgid(s->pid), s->pid);
  ::kill(s->pid, SIGKILL);
  EXPECT_EQ(wait_exit(*s).kind, core::exit_kind::killed);
}

TEST(Spawn, NoFdLeaksIntoTheChild) {
  int leaked = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(leaked, 0);
  t::temp_dir dir;
  std::string out = dir.path() + "/fds";
  // The child lists its fds; only 0, 1, 2 (and ls's own) may be there.
  auto s = core::spawn({.argv = {"/bin/sh", "-c", "ls /proc/$$/fd > " + out}});
  ASSERT_TRUE(s);
  EXPECT_EQ(wait_exit(*s), core::exit_reason::normal());
  std::string listing = t::read_file(out);
  EXPECT_EQ(listing.find(std::to_string(leaked) + "\n"), std::string::npos) << listing;
  ::close(leaked);
}

TEST(Spawn, PlacesFdsInTheChild) {
  auto p = core::make_pipe();
  ASSERT_TRUE(p);
  auto s = core::spawn({.argv = {t::bin_path("otpd_test_child"), "ready", "exit", "0"},
                        .env = {"OTPD_READY_FD=5"},
                        .inherit_env = false,
                        .fds = {{p->write.get(), 5}}});
  ASSERT_TRUE(s);
  p->write.reset();
  char c = 0;
  ASSERT_EQ(::read(p->read.get(), &c, 1), 1);
  EXPECT_EQ(c, '\n');
  EXPECT_EQ(wait_exit(*s), core::exit_reason::normal());
}

TEST(Spawn, DeathSignalKillsChildWithParent) {
  t::temp_dir dir;
  std::string pidfile = dir.path() + "/pid";
  // An intermediate process spawns the sleeper, then dies by SIGKILL.
  auto mid = core::spawn_function({}, [&]() {
    auto s = core::spawn({.argv = {t::bin_path("otpd_test_child"), "pidfile", pidfile, "sleep"}});
    if (!s) {
      return 1;
    }
    ::pause();
    return 0;
  });
  ASSERT_TRUE(mid);
  ASSERT_TRUE(t::wait_until([&] { return !t::read_file(pidfile).empty(); }));
  pid_t grandchild = std::stoi(t::read_file(pidfile));
  ASSERT_TRUE(t::process_alive(grandchild));
  ::kill(mid->pid, SIGKILL);
  EXPECT_EQ(wait_exit(*mid).kind, core::exit_kind::killed);
  EXPECT_TRUE(t::wait_until([&] { return !t::process_alive(grandchild); }));
}

TEST(Spawn, FunctionExitCodeAndPidfdPoll) {
  auto s = core::spawn_function({}, [] { return 7; });
  ASSERT_TRUE(s);
  pollfd p{s->pidfd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, static_cast<int>(t::scaled(std::chrono::milliseconds(5000)).count())), 1);
  auto e = core::try_reap(s->pidfd.get());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(core::exit_reason::from_siginfo(e->code, e->status), core::exit_reason::code(7));
}

TEST(KillAndReap, EndsAChildThatHeedsTheSignal) {
  auto s = core::spawn({.argv = {t::bin_path("otpd_test_child"), "sleep"}});
  ASSERT_TRUE(s);
  auto r = core::kill_and_reap(s->pid, SIGTERM, core::deadline::after(t::scaled(5000ms)),
                               s->pidfd.get());
  EXPECT_FALSE(r.killed);
  EXPECT_EQ(r.exit.code, CLD_KILLED);
  EXPECT_EQ(r.exit.status, SIGTERM);
  EXPECT_TRUE(t::zombie_children().empty());
}

TEST(KillAndReap, KillsAChildThatIgnoresTheSignalAtTheDeadline) {
  // Ready only once it ignores SIGTERM.
  auto p = core::make_pipe();
  ASSERT_TRUE(p);
  auto s = core::spawn({.argv = {t::bin_path("otpd_test_child"), "ignore-term", "ready", "sleep"},
                        .env = {"OTPD_READY_FD=3"},
                        .inherit_env = false,
                        .fds = {{p->write.get(), 3}}});
  ASSERT_TRUE(s);
  p->write.reset();
  ASSERT_TRUE(core::wait_ready(p->read.get(), core::deadline::after(t::scaled(5000ms))));
  // Without a pidfd of ours: kill_and_reap opens one.
  s->pidfd.reset();
  auto r = core::kill_and_reap(s->pid, SIGTERM, core::deadline::after(200ms));
  EXPECT_TRUE(r.killed);
  EXPECT_EQ(r.exit.code, CLD_KILLED);
  EXPECT_EQ(r.exit.status, SIGKILL);
  EXPECT_TRUE(t::zombie_children().empty());
}

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include <otpd/runtime/process.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;
using otpd::core::exit_kind;
using otpd::core::exit_reason;

namespace {
auto long_wait() {
  return rt::deadline::after(t::scaled(20s));
}

exit_reason down_of(const std::function<int()>& fn) {
  auto p = rt::spawn(fn, {.monitor = true});
  EXPECT_TRUE(p);
  auto m = rt::receive_ref(p->monitor_ref, long_wait());
  EXPECT_TRUE(m);
  EXPECT_EQ(m->kind, rt::kind::down);
  EXPECT_EQ(m->from, p->pid);
  return m->reason();
}

void no_core() {
  rlimit rl{0, 0};
  ::setrlimit(RLIMIT_CORE, &rl);
}
}  // namespace

TEST(Monitor, DownCarriesTheExitReason) {
  EXPECT_EQ(down_of([] { return 0; }), exit_reason::normal());
  EXPECT_EQ(down_of([] { return 3; }), exit_reason::code(3));
  EXPECT_EQ(down_of([] {
              ::raise(SIGKILL);
              return 0;
            }).kind,
            exit_kind::killed);
  EXPECT_EQ(down_of([] {
              no_core();
              ::raise(SIGSEGV);
              return 0;
            }),
            (exit_reason{exit_kind::signal, SIGSEGV}));
  EXPECT_TRUE(t::wait_until([] {
    rt::dispatch_pending();
    return t::zombie_children().empty();
  }));
}

TEST(Monitor, ProgramKilledFromOutsideGivesKilled) {
  auto p = rt::spawn_exec({t::bin_path("otpd_test_child"), "sleep"}, {.spawn = {.monitor = true}});
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_EQ(t::sh("kill -9 " + std::to_string(p->pid)), 0);
  auto m = rt::receive_ref(p->monitor_ref, long_wait());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reason().kind, exit_kind::killed);
  EXPECT_TRUE(t::zombie_children().empty());
}

TEST(Monitor, MissingProcessGivesNoprocAtOnce) {
  rt::ref r = rt::monitor(pid_t{0x7ffffff0});
  auto m = rt::receive_ref(r, rt::deadline::after(0ms));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reason().kind, exit_kind::noproc);
  rt::ref byname = rt::monitor(rt::address("nobody"));
  auto n = rt::receive_ref(byname, rt::deadline::after(0ms));
  ASSERT_TRUE(n);
  EXPECT_EQ(n->reason().kind, exit_kind::noproc);
}

TEST(Monitor, DemonitorFlushDropsTheDown) {
  auto p = rt::spawn([] { return 0; }, {.monitor = true});
  ASSERT_TRUE(p);
  EXPECT_TRUE(
      t::wait_until([&] { return t::process_state(p->pid) == 'Z' || !t::process_alive(p->pid); }));
  rt::demonitor(p->monitor_ref, true);
  EXPECT_EQ(rt::receive_ref(p->monitor_ref, rt::deadline::after(20ms)).error(),
            otpd::core::errc::timeout);
}

TEST(Monitor, NonChildDeathIsSeen) {
  // A sibling: spawned by a helper process, so we are not its parent.
  pid_t parent = rt::self();
  auto helper = rt::spawn([parent] {
    auto s = rt::spawn_exec({t::bin_path("otpd_test_child"), "sleep"});
    if (!s) {
      return 1;
    }
    (void)rt::send(parent, static_cast<int>(s->pid));
    (void)rt::receive(rt::deadline::after(t::scaled(30s)));
    return 0;
  });
  ASSERT_TRUE(helper);
  auto m = rt::receive(long_wait());
  ASSERT_TRUE(m);
  pid_t sibling = *m->as<int>();
  rt::ref r = rt::monitor(sibling);
  ::kill(sibling, SIGKILL);
  auto down = rt::receive_ref(r, long_wait());
  ASSERT_TRUE(down);
  EXPECT_EQ(down->from, sibling);
  ASSERT_TRUE(rt::send(helper->pid, 0));
}

TEST(Link, AbnormalExitPropagatesAndTrapExitTurnsItIntoAMessage) {
  // middle links to a crashing child without trapping: it dies with the
  // child's reason, and we (monitoring middle) see that reason.
  auto middle = rt::spawn(
      [] {
        auto c = rt::spawn([] { return 7; }, {.link = true});
        if (!c) {
          return 1;
        }
        (void)rt::receive(rt::deadline::after(t::scaled(30s)));
        return 0;  // not reached: the link kills us first
      },
      {.monitor = true});
  ASSERT_TRUE(middle);
  auto m = rt::receive_ref(middle->monitor_ref, long_wait());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reason(), exit_reason::code(7));

  // Trapping: the same death arrives as an EXIT message.
  rt::trap_exit(true);
  auto c = rt::spawn([] { return 5; }, {.link = true});
  ASSERT_TRUE(c);
  auto e = rt::receive([](const rt::message& x) { return x.kind == rt::kind::exit; }, long_wait());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->from, c->pid);
  EXPECT_EQ(e->reason(), exit_reason::code(5));
  rt::trap_exit(false);
}

TEST(Link, NormalExitKillsNobody) {
  auto middle = rt::spawn(
      [] {
        auto c = rt::spawn([] { return 0; }, {.link = true, .monitor = true});
        if (!c) {
          return 1;
        }
        auto d = rt::receive_ref(c->monitor_ref, rt::deadline::after(t::scaled(20s)));
        return d ? 42 : 2;  // still alive after the linked child's normal exit
      },
      {.monitor = true});
  ASSERT_TRUE(middle);
  auto m = rt::receive_ref(middle->monitor_ref, long_wait());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->reason(), exit_reason::code(42));
}

TEST(Link, PeerDiesWhenWeAreKilled) {
  // A linked child (in receive) dies when its parent is killed.
  pid_t me = rt::self();
  auto middle = rt::spawn(
      [me] {
        auto c = rt::spawn(
            [] {
              (void)rt::receive(rt::deadline::after(t::scaled(30s)));
              return 0;
            },
            {.link = true, .kill_with_parent = false});
        if (!c) {
          return 1;
        }
        (void)rt::send(me, static_cast<int>(c->pid));
        ::pause();
        return 0;
      },
      {.monitor = true});
  ASSERT_TRUE(middle);
  auto m = rt::receive([](const rt::message& x) { return x.kind == rt::kind::user; }, long_wait());
  ASSERT_TRUE(m);
  pid_t grandchild = *m->as<int>();
  ASSERT_TRUE(t::process_alive(grandchild));
  ::kill(middle->pid, SIGKILL);
  ASSERT_TRUE(rt::receive_ref(middle->monitor_ref, long_wait()));
  EXPECT_TRUE(t::wait_until([&] { return !t::process_alive(grandchild); }));
}

TEST(Spawn, ExecFailureIsReportedAndReadinessIsAwaited) {
  // A path that cannot exist: /proc/self/ holds only what the kernel puts
  // there (Debian's /nonexistent, nobody's home, exists wherever a program
  // running as nobody, or root, made it).
  auto bad = rt::spawn_exec({"/proc/self/nonexistent/worker"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), otpd::core::errc::exec_failed);
  auto ok = rt::spawn_exec({t::bin_path("otpd_test_child"), "wait", "20", "ready", "sleep"},
                           {.spawn = {.monitor = true}, .wait_ready = true});
  ASSERT_TRUE(ok) << ok.error().message();
  auto never = rt::spawn_exec({t::bin_path("otpd_test_child"), "exit", "0"}, {.wait_ready = true});
  ASSERT_FALSE(never);
  EXPECT_EQ(never.error(), otpd::core::errc::start_failed);
  ::kill(ok->pid, SIGKILL);
  ASSERT_TRUE(rt::receive_ref(ok->monitor_ref, long_wait()));
  EXPECT_TRUE(t::wait_until([] {
    rt::dispatch_pending();
    return t::zombie_children().empty();
  }));
}

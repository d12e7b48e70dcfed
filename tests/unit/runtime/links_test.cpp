// Links with a process that is not our child: only its parent can reap it,
// so its exit reason comes from its zombie's /proc entry or from otpd, and
// may be unknown. A normal end never kills the partner; an abnormal known
// one does; an unknown one is not propagated (process.hpp, link).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;
using otpd::core::exit_kind;
using otpd::core::exit_reason;
using otpd::core::unique_fd;

namespace {

auto long_wait() {
  return rt::deadline::after(t::scaled(20s));
}

struct link_case {
  bool peer_exits_normally = true;  // else SIGTERM, sent from outside
  bool trap = false;
  // The peer's parent reaps it before the partner looks: /proc has nothing
  // left and there is no otpd in this test to ask, so the reason is unknown.
  bool reaped_first = false;
};

struct link_result {
  exit_reason partner_end;  // how the partner ended (its DOWN, here)
  exit_reason seen;         // what the partner saw of the peer: its EXIT, or its DOWN
  bool reported = false;    // the partner lived to report it
};

struct pipe_pair {
  unique_fd r, w;
  pipe_pair() {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    r.reset(p[0]);
    w.reset(p[1]);
  }
  void release() const { (void)!::write(w.get(), "x", 1); }
  void await() const {
    char b;
    (void)!::read(r.get(), &b, 1);
  }
};

std::tuple<int, int> packed(const exit_reason& r) {
  return {static_cast<int>(r.kind), r.value};
}

// The peer is a child of a helper process, the partner another child of
// ours: the peer is not the partner's child. The partner links to it and
// monitors it (the DOWN comes out of the same exit handling as the link's
// effect, so a partner that gets its DOWN has survived the link).
link_result run(const link_case& c) {
  pid_t me = rt::self();
  pipe_pair helper_done;  // the helper waits on it before reaping the peer
  pipe_pair partner_go;   // the partner waits on it before looking at the peer
  auto helper = rt::spawn(
      [&] {
        auto peer = rt::spawn(
            [] {
              (void)rt::receive(rt::deadline::after(t::scaled(30s)));
              return 0;
            },
            {.monitor = true});
        if (!peer) {
          return 1;
        }
        (void)rt::send(me, static_cast<int>(peer->pid));
        if (c.reaped_first) {
          (void)rt::receive_ref(peer->monitor_ref, rt::deadline::after(t::scaled(30s)));
          (void)rt::send(me, std::string("reaped"));
        }
        helper_done.await();  // not a mailbox call: the peer stays a zombie
        t::wait_until([] {
          rt::dispatch_pending();
          return t::zombie_children().empty();
        });
        return 0;
      },
      {.monitor = true});
  EXPECT_TRUE(helper);
  auto from = [](pid_t pid) {
    return [pid](const rt::message& m) { return m.from == pid && m.kind == rt::kind::user; };
  };
  auto p = rt::receive(from(helper->pid), long_wait());
  EXPECT_TRUE(p);
  pid_t peer = *p->as<int>();

  auto partner = rt::spawn(
      [&, peer] {
        rt::trap_exit(c.trap);
        if (!rt::link(peer)) {
          return 1;
        }
        rt::ref down = rt::monitor(peer);
        (void)rt::send(me, std::string("linked"));
        partner_go.await();
        if (c.trap) {
          auto e = rt::receive([](const rt::message& m) { return m.kind == rt::kind::exit; },
                               rt::deadline::after(t::scaled(30s)));
          (void)rt::send(me, e ? packed(e->reason()) : std::tuple<int, int>(-1, 0));
          return 42;
        }
        auto d = rt::receive_ref(down, rt::deadline::after(t::scaled(30s)));
        (void)rt::send(me, d ? packed(d->reason()) : std::tuple<int, int>(-1, 0));
        return 42;
      },
      {.monitor = true});
  EXPECT_TRUE(partner);
  EXPECT_TRUE(rt::receive(from(partner->pid), long_wait()));  // "linked"

  if (c.peer_exits_normally) {
    EXPECT_TRUE(rt::send(peer, std::string("go")));
  } else {
    ::kill(peer, SIGTERM);
  }
  if (c.reaped_first) {
    EXPECT_TRUE(rt::receive(from(helper->pid), long_wait()));  // "reaped"
    EXPECT_TRUE(t::wait_until([&] { return t::process_state(peer) == 0; }));
  } else {
    EXPECT_TRUE(t::wait_until([&] { return t::process_state(peer) == 'Z'; }));
  }
  partner_go.release();

  link_result out;
  auto m = rt::receive_ref(partner->monitor_ref, long_wait());
  EXPECT_TRUE(m);
  out.partner_end = m ? m->reason() : exit_reason{exit_kind::noproc, 0};
  if (auto r = rt::receive(from(partner->pid), rt::deadline::after(0ms))) {
    out.reported = true;
    out.seen = r->reason();
  }
  helper_done.release();
  EXPECT_TRUE(rt::receive_ref(helper->monitor_ref, long_wait()));
  return out;
}

TEST(LinkNonChild, NormalExitKillsNobody) {
  link_result r = run({.peer_exits_normally = true, .trap = false});
  EXPECT_EQ(r.partner_end, exit_reason::code(42));
  EXPECT_TRUE(r.reported);
  EXPECT_EQ(r.seen, exit_reason::normal());  // read from the peer's zombie
}

TEST(LinkNonChild, NormalExitArrivesAsExitNormalWhenTrapping) {
  link_result r = run({.peer_exits_normally = true, .trap = true});
  EXPECT_EQ(r.partner_end, exit_reason::code(42));
  EXPECT_TRUE(r.reported);
  EXPECT_EQ(r.seen, exit_reason::normal());
}

TEST(LinkNonChild, ASignalKillsThePartnerWithTheSameReason) {
  link_result r = run({.peer_exits_normally = false, .trap = false});
  EXPECT_EQ(r.partner_end, (exit_reason{exit_kind::signal, SIGTERM}));
  EXPECT_FALSE(r.reported);
}

TEST(LinkNonChild, ASignalArrivesAsExitWhenTrapping) {
  link_result r = run({.peer_exits_normally = false, .trap = true});
  EXPECT_EQ(r.partner_end, exit_reason::code(42));
  EXPECT_TRUE(r.reported);
  EXPECT_EQ(r.seen, (exit_reason{exit_kind::signal, SIGTERM}));
}

// Reaped by its parent before the partner looked, no otpd to ask: the
// reason is unknown, and an unknown end is not propagated (it may have
// been a normal exit); a trapping partner gets EXIT unknown.
TEST(LinkNonChild, AnUnknownEndIsNotPropagated) {
  for (bool normally : {true, false}) {
    link_result r = run({.peer_exits_normally = normally, .trap = false, .reaped_first = true});
    EXPECT_EQ(r.partner_end, exit_reason::code(42)) << normally;
    EXPECT_TRUE(r.reported);
    EXPECT_EQ(r.seen.kind, exit_kind::unknown);
  }
  link_result r = run({.peer_exits_normally = true, .trap = true, .reaped_first = true});
  EXPECT_EQ(r.partner_end, exit_reason::code(42));
  EXPECT_TRUE(r.reported);
  EXPECT_EQ(r.seen.kind, exit_kind::unknown);
}

}  // namespace

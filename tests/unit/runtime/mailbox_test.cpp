#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/runtime/process.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;
using otpd::core::errc;

namespace {
auto long_wait() {
  return rt::deadline::after(t::scaled(20s));
}

// Every mailbox test runs on both transports: the socket alone, and the
// shared-memory ring beside it. The setting is inherited by the children the
// test spawns, so both ends of each pair use the transport under test.
class Mailbox : public ::testing::TestWithParam<rt::transport> {
 protected:
  void SetUp() override { rt::set_transport(GetParam()); }
  void TearDown() override { rt::set_transport(rt::transport::ring); }
};
}  // namespace

INSTANTIATE_TEST_SUITE_P(Transports, Mailbox,
                         ::testing::Values(rt::transport::socket, rt::transport::ring),
                         [](const auto& info) { return std::string(rt::to_string(info.param)); });

TEST_P(Mailbox, OneSenderHundredThousandMessagesInOrder) {
  pid_t parent = rt::self();
  constexpr int n = 100000;
  auto child = rt::spawn([parent] {
    for (int i = 0; i < n; ++i) {
      if (!rt::post(parent, i)) {
        return 1;
      }
    }
    return rt::flush() ? 0 : 2;
  });
  ASSERT_TRUE(child);
  for (int i = 0; i < n; ++i) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "message " << i << ": " << m.error().message();
    ASSERT_EQ(m->from, child->pid);
    ASSERT_EQ(*m->as<int>(), i);
  }
}

TEST_P(Mailbox, FourConcurrentSendersKeepPerSenderOrderAndLoseNothing) {
  pid_t parent = rt::self();
  constexpr int per_sender = 25000;
  std::map<pid_t, int> next;
  for (int s = 0; s < 4; ++s) {
    auto child = rt::spawn([parent, s] {
      for (int i = 0; i < per_sender; ++i) {
        // Alternate single sends and batched posts: both keep order. Four
        // senders outrun one receiver, so a send or a post may wait for
        // room (a full ring, 64 KiB queued): each wait gets the test's long
        // deadline, not the default 5 s (under sanitizers on a loaded
        // machine the receiver can lag that much).
        auto body = rt::pack(std::make_tuple(s, i));
        otpd::core::Result<void> r;
        if (i % 64 == 1) {
          r = rt::flush(long_wait());
        }
        if (r) {
          r = (i % 3 == 0) ? rt::send_message(parent, rt::kind::user, {}, body, long_wait())
                           : rt::post_message(parent, rt::kind::user, {}, body, long_wait());
        }
        if (!r) {
          // Says why when the receive below then times out (a send that
          // waited past its deadline on an overloaded machine).
          std::fprintf(stderr, "sender %d: message %d: %s\n", s, i, r.error().message().c_str());
          return 1;
        }
      }
      return rt::flush(long_wait()) ? 0 : 2;
    });
    ASSERT_TRUE(child);
    next[child->pid] = 0;
  }
  for (int k = 0; k < 4 * per_sender; ++k) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "after " << k << " messages";
    auto v = m->as<std::tuple<int, int>>();
    ASSERT_TRUE(v);
    ASSERT_TRUE(next.count(m->from));
    ASSERT_EQ(std::get<1>(*v), next[m->from]) << "out of order from pid " << m->from;
    ++next[m->from];
  }
  for (auto& [pid, count] : next) {
    EXPECT_EQ(count, per_sender);
  }
}

TEST_P(Mailbox, OneMebibyteBodyBothWays) {
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>(i * 131 % 251);
  }
  pid_t parent = rt::self();
  auto echo = rt::spawn([parent] {
    auto m = rt::receive(rt::deadline::after(t::scaled(20s)));
    if (!m) {
      return 1;
    }
    return rt::send_message(parent, rt::kind::user, m->ref, m->body) ? 0 : 2;
  });
  ASSERT_TRUE(echo);
  rt::ref r = rt::make_ref();
  ASSERT_TRUE(rt::send_message(echo->pid, rt::kind::user, r, rt::pack(big)));
  auto back = rt::receive_ref(r, long_wait());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back->as<std::string>(), big);
}

// One large message must not keep a large receive block for the life of the
// connection: once it is taken in and dropped, the next read goes back to a
// block of the usual size.
TEST_P(Mailbox, TheReceiveBlockShrinksBackAfterALargeMessage) {
  pid_t parent = rt::self();
  rt::ref r1 = rt::make_ref();
  rt::ref r2 = rt::make_ref();
  auto sender = rt::spawn([parent, r1, r2] {
    if (!rt::send_message(parent, rt::kind::user, r1, rt::pack(std::string(8u << 20, 'x')))) {
      return 1;
    }
    // The next message only once the parent has taken in and dropped the
    // large one.
    if (!rt::receive(rt::deadline::after(t::scaled(20s)))) {
      return 2;
    }
    if (!rt::send_message(parent, rt::kind::user, r2, rt::pack(std::string("small")))) {
      return 3;
    }
    return rt::receive(rt::deadline::after(t::scaled(20s))) ? 0 : 4;
  });
  ASSERT_TRUE(sender);
  {
    auto big = rt::receive_ref(r1, long_wait());
    ASSERT_TRUE(big);
    EXPECT_EQ(big->as<std::string>()->size(), 8u << 20);
  }
  ASSERT_TRUE(rt::send(sender->pid, std::string("go")));
  auto small = rt::receive_ref(r2, long_wait());
  ASSERT_TRUE(small);
  EXPECT_LT(rt::receive_buffer_bytes(), std::size_t{4} << 20)
      << "a block grown for the 8 MiB message is still held";
  ASSERT_TRUE(rt::send(sender->pid, std::string("end")));
}

// Received bodies view the buffer they were read into (or, from the ring, a
// block they were copied to): one kept by the program, or left queued, must
// stay intact while many more messages are read after it.
TEST_P(Mailbox, BodiesKeptOrLeftQueuedStayIntactWhileMoreArrive) {
  pid_t parent = rt::self();
  constexpr int n = 20000;
  auto text = [](int i) {
    static constexpr std::size_t sizes[] = {3, 90, 200, 1024, 9000};
    std::string s(sizes[i % 5], '\0');
    for (std::size_t k = 0; k < s.size(); ++k) {
      s[k] = static_cast<char>((i * 31 + static_cast<int>(k)) % 251);
    }
    return s;
  };
  auto child = rt::spawn([parent, text] {
    for (int i = 0; i < n; ++i) {
      // Every 7th is a cast: the receive below skips those, leaving them queued.
      auto k = i % 7 == 0 ? rt::kind::cast : rt::kind::user;
      if (!rt::post_message(parent, k, {}, rt::pack(std::make_tuple(i, text(i))))) {
        return 1;
      }
    }
    return rt::flush(long_wait()) ? 0 : 2;
  });
  ASSERT_TRUE(child);
  // The casts stay queued until the end; every 97th of the others is kept.
  auto not_seventh = [](const rt::message& m) { return m.kind == rt::kind::user; };
  std::vector<rt::message> kept;
  int taken = 0;
  for (int i = 0; i < n; ++i) {
    if (i % 7 == 0) {
      continue;
    }
    auto m = rt::receive(not_seventh, long_wait());
    ASSERT_TRUE(m) << "message " << i;
    auto v = m->as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v);
    ASSERT_EQ(std::get<0>(*v), i);
    ASSERT_EQ(std::get<1>(*v), text(i));
    ++taken;
    if (i % 97 == 0) {
      kept.push_back(*m);
    }
  }
  EXPECT_EQ(rt::queued(), static_cast<std::size_t>((n + 6) / 7));
  for (int i = 0; i < n; i += 7) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "queued message " << i;
    auto v = m->as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v);
    ASSERT_EQ(std::get<0>(*v), i);
    ASSERT_EQ(std::get<1>(*v), text(i));
  }
  for (const auto& m : kept) {
    auto v = m.as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v);
    EXPECT_EQ(std::get<1>(*v), text(std::get<0>(*v)));
  }
  EXPECT_GT(kept.size(), 100u);
  EXPECT_GT(taken, 0);
}

TEST_P(Mailbox, SelectiveReceiveLeavesOthersQueuedInOrder) {
  for (const char* s : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(rt::send(rt::self(), std::string(s)));
  }
  auto is = [](const std::string& want) {
    return [want](const rt::message& m) { return m.as<std::string>().value_or("") == want; };
  };
  auto c = rt::receive(is("c"), long_wait());
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->as<std::string>(), "c");
  EXPECT_EQ(rt::queued(), 3u);
  for (const char* s : {"a", "b", "d"}) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m);
    EXPECT_EQ(*m->as<std::string>(), s);
  }
}

TEST_P(Mailbox, ReceiveTimesOut) {
  auto start = std::chrono::steady_clock::now();
  auto m = rt::receive(50ms);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), errc::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  // A predicate that matches nothing also times out, leaving the queue alone.
  ASSERT_TRUE(rt::send(rt::self(), 1));
  auto none = rt::receive([](const rt::message&) { return false; }, 20ms);
  EXPECT_EQ(none.error(), errc::timeout);
  EXPECT_EQ(rt::queued(), 1u);
  ASSERT_TRUE(rt::receive(long_wait()));
}

TEST_P(Mailbox, SendToMissingProcessOrNameIsNoproc) {
  EXPECT_EQ(rt::send(pid_t{0x7ffffff0}, 1).error(), errc::noproc);
  EXPECT_EQ(rt::send(std::string("nobody_here"), 1).error(), errc::noproc);
  EXPECT_EQ(rt::whereis("nobody_here").error(), errc::noproc);
  EXPECT_EQ(rt::register_name("bad/name").error(), errc::invalid_argument);
}

TEST_P(Mailbox, NameFollowsTheRestartedHolder) {
  pid_t parent = rt::self();
  auto holder = [parent] {
    if (!rt::register_name("svc")) {
      return 1;
    }
    (void)rt::send(parent, std::string("registered"));
    auto m = rt::receive(rt::deadline::after(t::scaled(20s)));
    if (m) {
      (void)rt::send(m->from, std::string("pong"));
    }
    return 0;
  };
  auto first = rt::spawn(holder, {.monitor = true});
  ASSERT_TRUE(first);
  ASSERT_TRUE(rt::receive(long_wait()));
  EXPECT_EQ(*rt::whereis("svc"), first->pid);
  ::kill(first->pid, SIGKILL);
  ASSERT_TRUE(rt::receive_ref(first->monitor_ref, long_wait()));
  EXPECT_EQ(rt::whereis("svc").error(), errc::noproc);

  auto second = rt::spawn(holder);
  ASSERT_TRUE(second);
  ASSERT_TRUE(rt::receive(long_wait()));
  EXPECT_EQ(*rt::whereis("svc"), second->pid);
  ASSERT_TRUE(rt::send(std::string("svc"), std::string("ping")));
  auto pong = rt::receive(long_wait());
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->from, second->pid);
}

TEST_P(Mailbox, FullReceiverMakesSenderWaitThenFailNotDrop) {
  pid_t parent = rt::self();
  // The child never reads: its socket buffer fills up.
  auto sink = rt::spawn([parent] {
    (void)rt::send(parent, std::string("up"));
    ::pause();
    return 0;
  });
  ASSERT_TRUE(sink);
  ASSERT_TRUE(rt::receive(long_wait()));
  std::string chunk(64 * 1024, 'x');
  int sent = 0;
  otpd::core::Result<void> r;
  for (int i = 0; i < 10000; ++i) {
    r = rt::send_message(sink->pid, rt::kind::user, {}, rt::pack(chunk), rt::deadline::after(50ms));
    if (!r) {
      break;
    }
    ++sent;
  }
  ASSERT_FALSE(r) << "10000 x 64 KiB were all accepted by a receiver that never reads";
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_GT(sent, 0);
  ::kill(sink->pid, SIGKILL);
}

TEST_P(Mailbox, RefsAreUniqueAcrossProcesses) {
  pid_t parent = rt::self();
  // Made before the fork: the child must not go on from this pid and salt
  // (make_ref reads the pid once per process; a fork resets it).
  rt::ref before = rt::make_ref();
  auto child = rt::spawn([parent] {
    rt::ref r = rt::make_ref();
    return rt::send(parent, std::make_tuple(r.hi, r.lo)) ? 0 : 1;
  });
  ASSERT_TRUE(child);
  rt::ref mine = rt::make_ref();
  EXPECT_EQ(mine.hi, before.hi);
  EXPECT_EQ(mine.lo, before.lo + 1);
  auto m = rt::receive(long_wait());
  ASSERT_TRUE(m);
  auto [hi, lo] = *m->as<std::tuple<std::uint64_t, std::uint64_t>>();
  EXPECT_FALSE(mine == (rt::ref{hi, lo}));
  EXPECT_NE(hi, mine.hi);
  EXPECT_EQ(static_cast<pid_t>(hi >> 32), child->pid);
  EXPECT_EQ(static_cast<pid_t>(mine.hi >> 32), parent);
}

// Posts to two receivers in turn, single ones and runs of them: the sender's
// shortcut for "the same receiver as the last post" must never put one
// receiver's message into the other's ring, and each keeps its order.
TEST_P(Mailbox, PostsToTwoReceiversInTurnKeepEachOnesOrder) {
  pid_t parent = rt::self();
  constexpr int n = 20000;
  auto counter = [parent] {
    int next = 0;
    while (next < n) {
      auto m = rt::receive(rt::deadline::after(t::scaled(20s)));
      if (!m) {
        return 1;
      }
      auto v = m->as<std::tuple<pid_t, int>>();
      if (!v || std::get<0>(*v) != rt::self() || std::get<1>(*v) != next) {
        (void)rt::send(parent, std::string("wrong"));
        return 2;
      }
      ++next;
    }
    return rt::send(parent, std::string("all")) ? 0 : 3;
  };
  auto a = rt::spawn(counter);
  auto b = rt::spawn(counter);
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  int sent_a = 0;
  int sent_b = 0;
  for (int round = 0; sent_a < n || sent_b < n; ++round) {
    // 1, 2, 3 ... 7 messages to one, then to the other.
    pid_t to = (round % 2 == 0) ? a->pid : b->pid;
    int& sent = (to == a->pid) ? sent_a : sent_b;
    for (int k = 0; k <= round % 7 && sent < n; ++k, ++sent) {
      ASSERT_TRUE(rt::post_message(to, rt::kind::user, {}, rt::pack(std::make_tuple(to, sent)),
                                   long_wait()));
    }
  }
  ASSERT_TRUE(rt::flush(long_wait()));
  for (int i = 0; i < 2; ++i) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m);
    EXPECT_EQ(*m->as<std::string>(), "all") << "from pid " << m->from;
  }
}

// A receiver that ended: posts to it fail with noproc once its end is known,
// without touching the connection (and ring) that went with it, and another
// receiver posted to in between still gets everything.
TEST_P(Mailbox, PostsToAReceiverThatEndedFailAndOthersGoOn) {
  pid_t parent = rt::self();
  auto brief = rt::spawn(
      [] {
        (void)rt::receive(rt::deadline::after(t::scaled(20s)));
        return 0;
      },
      {.monitor = true});
  auto lasting = rt::spawn([parent] {
    int got = 0;
    while (auto m = rt::receive(rt::deadline::after(t::scaled(20s)))) {
      if (m->as<std::string>() && *m->as<std::string>() == "done") {
        return rt::send(parent, got) ? 0 : 1;
      }
      ++got;
    }
    return 2;
  });
  ASSERT_TRUE(brief);
  ASSERT_TRUE(lasting);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(rt::post_message(brief->pid, rt::kind::user, {}, rt::pack(i), long_wait()));
  }
  ASSERT_TRUE(rt::flush(long_wait()));
  ASSERT_TRUE(rt::receive_ref(brief->monitor_ref, long_wait()));
  int lasting_got = 0;
  otpd::core::Result<void> r;
  for (int i = 0; i < 100; ++i) {
    r = rt::post_message(brief->pid, rt::kind::user, {}, rt::pack(i), long_wait());
    EXPECT_FALSE(r) << "post " << i << " to an ended process";
    if (!r) {
      EXPECT_EQ(r.error(), errc::noproc);
    }
    ASSERT_TRUE(rt::post_message(lasting->pid, rt::kind::user, {}, rt::pack(i), long_wait()));
    ++lasting_got;
  }
  ASSERT_TRUE(rt::send(lasting->pid, std::string("done")));
  auto m = rt::receive(long_wait());
  ASSERT_TRUE(m);
  EXPECT_EQ(*m->as<int>(), lasting_got);
}

// Both ends of a pair report the transport asked for, once the ring is set
// up (during the first messages each way).
TEST_P(Mailbox, ConnectionsUseTheTransportAskedFor) {
  pid_t parent = rt::self();
  auto child = rt::spawn([parent] {
    // "one" carries the ring request; the answer is in by the time the ack
    // comes, so "two" switches to the ring and "three" goes through it.
    if (!rt::send(parent, std::string("one"))) {
      return 1;
    }
    auto ack = rt::receive(rt::deadline::after(t::scaled(20s)));
    if (!ack) {
      return 2;
    }
    if (!rt::send(parent, std::string("two")) || !rt::send(parent, std::string("three"))) {
      return 3;
    }
    auto bye = rt::receive(rt::deadline::after(t::scaled(20s)));
    return bye ? 0 : 4;
  });
  ASSERT_TRUE(child);
  auto one = rt::receive(long_wait());
  ASSERT_TRUE(one);
  EXPECT_EQ(*one->as<std::string>(), "one");
  ASSERT_TRUE(rt::send(child->pid, std::string("ack")));
  for (const char* want : {"two", "three"}) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m);
    EXPECT_EQ(*m->as<std::string>(), want);
  }
  EXPECT_EQ(rt::transport_from(child->pid), GetParam());
  // Our first send to the child asked; this one picks up the answer.
  ASSERT_TRUE(rt::send(child->pid, std::string("bye")));
  EXPECT_EQ(rt::transport_to(child->pid), GetParam());
  EXPECT_EQ(rt::transport_to(pid_t{0x7ffffff0}), rt::transport::none);
}

TEST(Timer, SendAfterArrivesInOrderAndCancelStopsIt) {
  auto start = std::chrono::steady_clock::now();
  rt::ref late = rt::send_after(60ms, std::string("late"));
  rt::ref early = rt::send_after(20ms, std::string("early"));
  rt::ref cancelled = rt::send_after(40ms, std::string("never"));
  EXPECT_TRUE(rt::cancel_timer(cancelled));
  EXPECT_FALSE(rt::cancel_timer(cancelled));
  auto a = rt::receive(long_wait());
  ASSERT_TRUE(a);
  EXPECT_EQ(a->ref, early);
  EXPECT_EQ(*a->as<std::string>(), "early");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  auto b = rt::receive(long_wait());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->ref, late);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 60ms);
  EXPECT_EQ(rt::receive(30ms).error(), errc::timeout);
}

// Mailboxes when things go wrong, on both transports: a sender killed in the
// middle of a burst, a receiver killed under a stream of sends, a receiver
// that stops reading; and, for the shared-memory ring, a peer that writes
// garbage into it.
#include "ring.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "wire.hpp"
#include <gtest/gtest.h>

#include <otpd/core/log.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
namespace ring = otpd::runtime::ring;
namespace wire = otpd::runtime::wire;
using namespace std::chrono_literals;
using otpd::core::errc;
using otpd::core::exit_kind;

namespace {

auto long_wait() {
  return rt::deadline::after(t::scaled(20s));
}

class MailboxFailure : public ::testing::TestWithParam<rt::transport> {
 protected:
  void SetUp() override { rt::set_transport(GetParam()); }
  void TearDown() override { rt::set_transport(rt::transport::ring); }
};

// Until the DOWN of mon: every message before it must be the next of the
// sequence, whole. Returns how many came.
int receive_sequence_until_down(int next, const rt::ref& mon, exit_kind want) {
  while (true) {
    auto m = rt::receive(long_wait());
    EXPECT_TRUE(m) << "after message " << next;
    if (!m) {
      return next;
    }
    if (m->kind == rt::kind::down) {
      EXPECT_EQ(m->ref, mon);
      EXPECT_EQ(m->reason().kind, want);
      return next;
    }
    auto v = m->as<std::tuple<int, std::string>>();
    EXPECT_TRUE(v) << "a torn or malformed message after " << next;
    if (!v) {
      return next;
    }
    EXPECT_EQ(std::get<0>(*v), next);
    EXPECT_EQ(std::get<1>(*v), std::string(static_cast<std::size_t>(next % 700), 'p'));
    ++next;
  }
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Transports, MailboxFailure,
                         ::testing::Values(rt::transport::socket, rt::transport::ring),
                         [](const auto& info) { return std::string(rt::to_string(info.param)); });

TEST_P(MailboxFailure, SenderKilledMidBurstLeavesWholeMessagesThenTheDown) {
  pid_t parent = rt::self();
  auto child = rt::spawn(
      [parent] {
        // Sizes vary, so the kill lands in the middle of copies of all sizes.
        std::string pad;
        for (int i = 0;; ++i) {
          pad.assign(static_cast<std::size_t>(i % 700), 'p');
          if (!rt::post(parent, std::make_tuple(i, pad))) {
            return 1;
          }
        }
      },
      {.monitor = true});
  ASSERT_TRUE(child);
  int next = 0;
  for (; next < 20000; ++next) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "message " << next;
    auto v = m->as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v);
    ASSERT_EQ(std::get<0>(*v), next);
  }
  ASSERT_EQ(::kill(child->pid, SIGKILL), 0);
  int total = receive_sequence_until_down(next, child->monitor_ref, exit_kind::killed);
  EXPECT_GE(total, 20000);
}

// A sender that posts without pause, to a receiver slower than it, keeps
// the receiver's socket reads full (or its ring busy); another peer's
// message must still get in within a few reads of the burst after it was
// sent: a receiver that kept reading the bursting connection without
// looking at the epoll set would serve the other only when the burst pauses
// (10,000-54,000 messages late on a 2-core machine). The burst's messages
// stay whole and in order, then its DOWN.
TEST_P(MailboxFailure, ABurstingSenderDoesNotShutOutAnotherPeer) {
  pid_t parent = rt::self();
  constexpr std::size_t body = 4096;
  auto burst = rt::spawn(
      [parent] {
        const std::string pad(body, 'q');
        for (int i = 0;; ++i) {
          if (!rt::post(parent, std::make_tuple(i, pad))) {
            return 1;
          }
        }
      },
      {.monitor = true});
  ASSERT_TRUE(burst);
  // Once the burst is at full speed (2,000 messages in), another peer sends
  // one message, and says on a pipe when it is in our socket.
  int sent[2];
  ASSERT_EQ(::pipe2(sent, O_CLOEXEC | O_NONBLOCK), 0);
  pid_t other_pid = -1;
  int next = 0;
  int after_sent = -1;  // burst messages taken since the other's was sent
  bool hello = false;
  unsigned long work = 0;
  while (!hello && after_sent < 100000) {
    if (next == 2000 && other_pid < 0) {
      auto other = rt::spawn([parent, w = sent[1]] {
        if (!rt::send(parent, std::string("hello"))) {
          return 1;
        }
        return ::write(w, "s", 1) == 1 ? 0 : 2;
      });
      ASSERT_TRUE(other);
      other_pid = other->pid;
    }
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "after message " << next;
    if (m->from == other_pid) {
      auto text = m->as<std::string>();
      ASSERT_TRUE(text);
      EXPECT_EQ(*text, "hello");
      hello = true;
      break;
    }
    auto v = m->as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v) << "a torn or malformed message after " << next;
    ASSERT_EQ(std::get<0>(*v), next);
    ASSERT_EQ(std::get<1>(*v).size(), body);
    ++next;
    // Work on each message, so that the sender outruns this receiver.
    for (int pass = 0; pass < 8; ++pass) {
      for (char c : std::get<1>(*v)) {
        work = work * 31 + static_cast<unsigned char>(c);
      }
    }
    char b;
    if (after_sent >= 0) {
      ++after_sent;
    } else if (::read(sent[0], &b, 1) == 1) {
      after_sent = 0;
    }
  }
  ::close(sent[0]);
  ::close(sent[1]);
  ASSERT_EQ(::kill(burst->pid, SIGKILL), 0);
  EXPECT_TRUE(hello) << "another peer's message did not get past the burst: " << after_sent
                     << " of its messages taken after it was sent (work " << work << ")";
  EXPECT_LT(after_sent, 5000);
  // The rest of the burst, whole and in order, then its DOWN.
  while (true) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "after message " << next;
    if (m->kind == rt::kind::down) {
      EXPECT_EQ(m->ref, burst->monitor_ref);
      EXPECT_EQ(m->reason().kind, exit_kind::killed);
      break;
    }
    auto v = m->as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v) << "a torn or malformed message after " << next;
    ASSERT_EQ(std::get<0>(*v), next);
    ++next;
  }
}

TEST_P(MailboxFailure, ReceiverKilledMakesSendsFailWithoutHanging) {
  pid_t parent = rt::self();
  auto child = rt::spawn(
      [parent] {
        // Answers "hello" (and so, first, its ring request), then keeps reading.
        if (!rt::receive(rt::deadline::after(t::scaled(20s))) ||
            !rt::send(parent, std::string("up"))) {
          return 1;
        }
        while (rt::receive(rt::deadline::never())) {
        }
        return 2;
      },
      {.monitor = true});
  ASSERT_TRUE(child);
  ASSERT_TRUE(rt::send(child->pid, std::string("hello")));
  ASSERT_TRUE(rt::receive(long_wait()));
  ASSERT_TRUE(rt::send(child->pid, 1));  // picks up the ring
  EXPECT_EQ(rt::transport_to(child->pid), GetParam());
  ASSERT_EQ(::kill(child->pid, SIGKILL), 0);
  std::string body = rt::pack(std::string(1000, 'x'));
  otpd::core::Result<void> r;
  int sent = 0;
  for (; sent < 1000000; ++sent) {
    r = rt::send_message(child->pid, rt::kind::user, {}, body, long_wait());
    if (!r) {
      break;
    }
  }
  ASSERT_FALSE(r) << "a million sends to a killed process all succeeded";
  EXPECT_EQ(r.error(), errc::noproc);
  auto down = rt::receive_ref(child->monitor_ref, long_wait());
  ASSERT_TRUE(down);
  EXPECT_EQ(down->reason().kind, exit_kind::killed);
}

TEST_P(MailboxFailure, FullReceiverMakesSmallSendsWaitUntilTheirDeadlineLosingNothing) {
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  pid_t parent = rt::self();
  auto child = rt::spawn([parent, rd = go[0]] {
    // One exchange (so the parent's ring is set up), then no reading at all
    // until the parent says go.
    auto hello = rt::receive(rt::deadline::after(t::scaled(20s)));
    if (!hello || !rt::send(parent, std::string("ready"))) {
      return 1;
    }
    char b;
    if (::read(rd, &b, 1) != 1) {
      return 2;
    }
    int n = 0;
    int expected = -1;
    while (expected < 0 || n < expected) {
      auto m = rt::receive(rt::deadline::after(t::scaled(20s)));
      if (!m) {
        return 3;
      }
      if (auto end = m->as<std::tuple<std::string, int>>(); end) {
        expected = std::get<1>(*end);
        continue;
      }
      auto v = m->as<std::tuple<int, std::string>>();
      if (!v || std::get<0>(*v) != n) {
        return 4;  // lost, reordered or torn
      }
      ++n;
    }
    return rt::send(parent, n) ? 0 : 5;
  });
  ASSERT_TRUE(child);
  ::close(go[0]);
  ASSERT_TRUE(rt::send(child->pid, std::string("hello")));
  auto ready = rt::receive(long_wait());
  ASSERT_TRUE(ready);
  std::string pad(1000, 'x');
  otpd::core::Result<void> r;
  int sent = 0;
  for (; sent < 100000; ++sent) {
    r = rt::send_message(child->pid, rt::kind::user, {}, rt::pack(std::make_tuple(sent, pad)),
                         rt::deadline::after(50ms));
    if (!r) {
      break;
    }
    if (sent == 0) {
      // Its write picked up the answer to the ring request "hello" carried.
      EXPECT_EQ(rt::transport_to(child->pid), GetParam());
    }
  }
  ASSERT_FALSE(r) << "100000 x 1 KiB were all accepted by a receiver that does not read";
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_GT(sent, 0);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  ASSERT_TRUE(rt::send(child->pid, std::make_tuple(std::string("end"), sent)));
  auto count = rt::receive(long_wait());
  ASSERT_TRUE(count);
  EXPECT_EQ(*count->as<int>(), sent);
}

TEST_P(MailboxFailure, EverythingASenderWroteBeforeItExitedArrivesThoughWeReadAfter) {
  // More than a receiver takes from a ring in one look, all written and the
  // sender gone before we read any: the end of the connection must not cut
  // off what its ring still holds.
  int done[2];
  ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
  pid_t parent = rt::self();
  // ~78 B a message: on the ring ~390 KB, several looks' worth (64 KiB
  // each); on the socket ~117 KB, what its buffer holds.
  const int n = GetParam() == rt::transport::ring ? 5000 : 1500;
  auto child = rt::spawn([parent, n, wr = done[1]] {
    // One exchange first, so the ring is set up (the parent answers the
    // request "hello" carried before "go"), and one send to switch to it.
    if (!rt::send(parent, std::string("hello")) ||
        !rt::receive(rt::deadline::after(t::scaled(20s))) ||
        !rt::send(parent, std::string("switch"))) {
      return 1;
    }
    std::string pad(40, 'p');
    for (int i = 0; i < n; ++i) {
      if (!rt::post(parent, std::make_tuple(i, pad))) {
        return 2;
      }
    }
    if (!rt::flush()) {
      return 3;
    }
    return ::write(wr, "d", 1) == 1 ? 0 : 4;
  });
  ASSERT_TRUE(child);
  ::close(done[1]);
  auto hello = rt::receive(long_wait());
  ASSERT_TRUE(hello);
  ASSERT_TRUE(rt::send(child->pid, std::string("go")));
  char b;
  ASSERT_EQ(::read(done[0], &b, 1), 1);
  ::close(done[0]);
  // Until it has exited (not reaped: the runtime reaps its children).
  siginfo_t si{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child->pid), &si, WEXITED | WNOWAIT), 0);
  // Both the end of the connection and the child's exit are there to be
  // seen in the first looks, before most of the ring is taken in.
  rt::dispatch_pending();
  rt::dispatch_pending();
  auto sw = rt::receive(long_wait());
  ASSERT_TRUE(sw);
  EXPECT_EQ(*sw->as<std::string>(), "switch");
  for (int i = 0; i < n; ++i) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "message " << i;
    auto v = m->as<std::tuple<int, std::string>>();
    ASSERT_TRUE(v);
    ASSERT_EQ(std::get<0>(*v), i);
  }
}

namespace {

// What this process writes to stderr (the log) while it lives.
class stderr_capture {
 public:
  stderr_capture() {
    std::fflush(stderr);
    char path[] = "/tmp/otpd-log.XXXXXX";
    fd_ = ::mkstemp(path);
    ::unlink(path);
    saved_ = ::dup(2);
    ::dup2(fd_, 2);
    level_ = otpd::core::current_log_level();
    otpd::core::set_log_level(otpd::core::log_level::warn);
  }
  stderr_capture(const stderr_capture&) = delete;
  stderr_capture& operator=(const stderr_capture&) = delete;
  ~stderr_capture() {
    otpd::core::set_log_level(level_);
    ::dup2(saved_, 2);
    ::close(saved_);
    ::close(fd_);
  }
  std::string text() const {
    std::string s;
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = ::pread(fd_, buf, sizeof buf, off)) > 0) {
      s.append(buf, static_cast<std::size_t>(n));
      off += n;
    }
    return s;
  }

 private:
  int fd_ = -1;
  int saved_ = -1;
  otpd::core::log_level level_{};
};

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) {
    ++n;
  }
  return n;
}

bool write_all(int fd, const void* p, std::size_t n) {
  return ::send(fd, p, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
}

bool write_flagged(int fd, std::uint8_t flags) {
  wire::header h = wire::make_header(rt::kind::user, ::getpid(), {}, 0);
  h.flags = flags;
  return write_all(fd, &h, sizeof h);
}

// A sender that sets a ring up by hand, as a hostile peer could.
struct raw_peer {
  int fd = -1;
  ring::mapping m;
};
std::optional<raw_peer> open_raw_ring(pid_t to) {
  raw_peer p;
  p.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::string path = rt::runtime_dir() + "/mbox/" + std::to_string(to);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::connect(p.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      !write_flagged(p.fd, ring::flag_ring_request)) {
    return std::nullopt;
  }
  pollfd pfd{p.fd, POLLIN, 0};
  if (::poll(&pfd, 1, static_cast<int>(t::scaled(20s).count())) != 1) {
    return std::nullopt;
  }
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  if (::recvmsg(p.fd, &mh, MSG_CMSG_CLOEXEC) != 1 || byte != ring::offer_ring) {
    return std::nullopt;
  }
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  if (cm == nullptr || cm->cmsg_type != SCM_RIGHTS) {
    return std::nullopt;
  }
  int memfd;
  std::memcpy(&memfd, CMSG_DATA(cm), sizeof memfd);
  auto m = ring::mapping::attach(memfd);
  ::close(memfd);
  if (!m || !write_flagged(p.fd, ring::flag_ring_start)) {
    return std::nullopt;
  }
  p.m = std::move(*m);
  return p;
}

}  // namespace

TEST(MailboxRing, GarbageInTheRingDropsThatConnectionWithAReasonAndNothingElse) {
  rt::set_transport(rt::transport::ring);
  stderr_capture log;
  pid_t parent = rt::self();
  auto hostile = rt::spawn(
      [parent] {
        std::vector<raw_peer> keep;  // open until the end: drops are the receiver's doing
        std::mt19937 rng(4242);
        for (int which = 0; which < 5; ++which) {
          auto p = open_raw_ring(parent);
          if (!p) {
            return 10 + which;
          }
          char* data = p->m.data();
          std::uint64_t cap = p->m.capacity();
          std::uint64_t tail = 0;
          switch (which) {
            case 0:  // a tail past the capacity
              tail = cap + 64;
              break;
            case 1:  // random bytes
              for (std::size_t i = 0; i < 4096; ++i) {
                data[i] = static_cast<char>(rng());
              }
              tail = 4096;
              break;
            case 2: {  // a frame longer than what is published
              wire::header h = wire::make_header(rt::kind::user, ::getpid(), {}, 1000);
              std::memcpy(data, &h, sizeof h);
              tail = sizeof h + 100;
              break;
            }
            case 3: {  // a control frame inside the ring
              wire::header h = wire::make_header(rt::kind::user, ::getpid(), {}, 0);
              h.flags = ring::flag_ring_start;
              std::memcpy(data, &h, sizeof h);
              tail = sizeof h;
              break;
            }
            case 4: {  // a frame on the socket that no marker in the ring announced
              std::string body = rt::pack(1);
              wire::header h = wire::make_header(rt::kind::user, ::getpid(), {}, body.size());
              std::string frame;
              wire::append_frame(frame, h, body);
              if (!write_all(p->fd, frame.data(), frame.size())) {
                return 20;
              }
              break;
            }
          }
          p->m.ctl()->tail.store(tail, std::memory_order_release);
          // Best effort: the receiver may have dropped this one already.
          (void)write_flagged(p->fd, ring::flag_wake);
          keep.push_back(std::move(*p));
        }
        if (!rt::send(parent, std::string("hostile done"))) {
          return 2;
        }
        auto bye = rt::receive(rt::deadline::after(t::scaled(20s)));
        return bye ? 0 : 3;
      },
      {.monitor = true});
  ASSERT_TRUE(hostile);
  auto done = rt::receive(long_wait());
  ASSERT_TRUE(done);
  ASSERT_EQ(done->kind, rt::kind::user) << done->reason().to_string();
  ASSERT_EQ(*done->as<std::string>(), "hostile done");
  const std::string dropped = "dropping connection from pid " + std::to_string(hostile->pid);
  ASSERT_TRUE(t::wait_until(
      [&] {
        rt::dispatch_pending();
        return count_of(log.text(), dropped) >= 5;
      },
      t::scaled(20s)))
      << log.text();
  std::string text = log.text();
  for (const char* why : {"ring tail out of range", "bad magic", "ring holds a torn frame",
                          "a control frame in the ring", "that the ring did not announce"}) {
    EXPECT_NE(text.find(why), std::string::npos) << why << " not in:\n" << text;
  }
  // The hostile process's own mailbox connection still works, and others
  // are served as before.
  EXPECT_EQ(rt::transport_from(hostile->pid), rt::transport::socket);
  auto good = rt::spawn([parent] {
    for (int i = 0; i < 5000; ++i) {
      if (!rt::post(parent, i)) {
        return 1;
      }
    }
    return rt::flush() ? 0 : 2;
  });
  ASSERT_TRUE(good);
  for (int i = 0; i < 5000; ++i) {
    auto m = rt::receive(long_wait());
    ASSERT_TRUE(m) << "message " << i;
    ASSERT_EQ(m->from, good->pid);
    ASSERT_EQ(*m->as<int>(), i);
  }
  ASSERT_TRUE(rt::send(hostile->pid, std::string("bye")));
  auto down = rt::receive_ref(hostile->monitor_ref, long_wait());
  ASSERT_TRUE(down);
  EXPECT_TRUE(down->reason().is_normal()) << down->reason().to_string();
}

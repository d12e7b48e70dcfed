// sd_notify from children, the parts without a daemon: the datagram parser
// (what counts, what is malformed), the clean-up of a child's text (valid
// UTF-8, no control characters), the log budget, and the socket itself
// (credentials, fds closed at once, oversized datagrams flagged).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "notify_socket.hpp"
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::supervisor::detail {
namespace {

TEST(NotifyParse, ReadsTheKeysOtpdActsOn) {
  auto m = parse_notify(
      "READY=1\nSTATUS=Serving 3 clients\nWATCHDOG=1\nERRNO=2\nWATCHDOG_USEC=2500000\n"
      "EXTEND_TIMEOUT_USEC=7000000\nMAINPID=77\nSTOPPING=1\nRELOADING=1\nBARRIER=1");
  ASSERT_TRUE(m) << m.message();
  EXPECT_TRUE(m->ready);
  EXPECT_EQ(m->status, "Serving 3 clients");
  EXPECT_TRUE(m->watchdog_ping);
  EXPECT_FALSE(m->watchdog_trigger);
  EXPECT_EQ(m->errno_value, 2);
  EXPECT_EQ(m->watchdog_usec, 2500000u);
  EXPECT_EQ(m->extend_timeout_usec, 7000000u);
  EXPECT_EQ(m->mainpid, "77");
  EXPECT_TRUE(m->stopping);
  EXPECT_TRUE(m->reloading);
  EXPECT_TRUE(m->barrier);
  EXPECT_TRUE(m->bad.empty());
  EXPECT_TRUE(m->ignored.empty());
}

TEST(NotifyParse, TriggerAndTrailingNewlineAndUnknownKeys) {
  auto m = parse_notify("WATCHDOG=trigger\nFDSTORE=1\nMONOTONIC_USEC=5\n");
  ASSERT_TRUE(m) << m.message();
  EXPECT_TRUE(m->watchdog_trigger);
  EXPECT_FALSE(m->watchdog_ping);
  EXPECT_FALSE(m->ready);
  EXPECT_EQ(m->ignored, (std::vector<std::string>{"FDSTORE", "MONOTONIC_USEC"}));
}

TEST(NotifyParse, BadValuesAreSkippedTheRestCounts) {
  auto m = parse_notify("READY=2\nWATCHDOG_USEC=abc\nERRNO=-1\nEXTEND_TIMEOUT_USEC=\nSTATUS=ok");
  ASSERT_TRUE(m) << m.message();
  EXPECT_FALSE(m->ready);
  EXPECT_FALSE(m->watchdog_usec);
  EXPECT_FALSE(m->errno_value);
  EXPECT_FALSE(m->extend_timeout_usec);
  EXPECT_EQ(m->status, "ok");
  EXPECT_EQ(m->bad.size(), 4u);
  // A number past 2^64 is no number.
  m = parse_notify("WATCHDOG_USEC=18446744073709551616");
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->watchdog_usec);
  m = parse_notify("WATCHDOG_USEC=18446744073709551615");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->watchdog_usec, 18446744073709551615u);
  // The last of a repeated key counts.
  m = parse_notify("STATUS=one\nSTATUS=two");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, "two");
}

TEST(NotifyParse, MalformedDatagramsAreRefusedWhole) {
  EXPECT_FALSE(parse_notify(""));
  EXPECT_FALSE(parse_notify(std::string("READY=1\0x", 9)));
  EXPECT_FALSE(parse_notify("READY=1\njust words"));
  EXPECT_FALSE(parse_notify("=1"));
  EXPECT_FALSE(parse_notify("1READY=1"));
  EXPECT_FALSE(parse_notify("RE ADY=1"));
  EXPECT_FALSE(parse_notify(std::string(notify_max_datagram + 1, 'A')));
  auto big = parse_notify("STATUS=" + std::string(notify_max_datagram - 7, 'x'));
  EXPECT_TRUE(big) << big.message();
  auto m = parse_notify("READY=1\nnonsense");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.message(), "line 2 is no KEY=VALUE");
}

TEST(NotifyParse, CleanTextKeepsUtf8AndReplacesControls) {
  EXPECT_EQ(clean_text("plain text"), "plain text");
  EXPECT_EQ(clean_text("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80");
  EXPECT_EQ(clean_text("\x1b[31mred\x07"), "?[31mred?");
  EXPECT_EQ(clean_text("tab\there\x7f"), "tab?here?");
  EXPECT_EQ(clean_text("\xc2\x9b"
                       "2J"),
            "?2J");  // C1 CSI
  EXPECT_EQ(clean_text("bad \xff\xfe end"), "bad ?? end");
  EXPECT_EQ(clean_text("\xc0\xaf"), "??");            // overlong '/'
  EXPECT_EQ(clean_text("\xed\xa0\x80"), "???");       // a surrogate
  EXPECT_EQ(clean_text("\xf4\x90\x80\x80"), "????");  // past U+10FFFF
  EXPECT_EQ(clean_text("cut \xe2\x9c"), "cut ??");    // a truncated sequence
  EXPECT_EQ(clean_text("abcdef", 4), "abcd");
  EXPECT_EQ(clean_text("ab\xc3\xa9", 3), "ab");  // never half a character
}

TEST(NotifyParse, LogBudgetCountsWhatItLeavesOut) {
  log_budget b(2, 1000);
  std::uint64_t skipped = 99;
  EXPECT_TRUE(b.allow(0, &skipped));
  EXPECT_EQ(skipped, 0u);
  EXPECT_TRUE(b.allow(10));
  EXPECT_FALSE(b.allow(20));
  EXPECT_FALSE(b.allow(999));
  EXPECT_TRUE(b.allow(1000, &skipped));
  EXPECT_EQ(skipped, 2u);
  EXPECT_TRUE(b.allow(1001, &skipped));
  EXPECT_EQ(skipped, 0u);
}

// ---- the socket -------------------------------------------------------------------

struct socket_fixture {
  uv_loop_t loop{};
  std::vector<notify_datagram> got;
  std::unique_ptr<notify_socket> s;

  socket_fixture() {
    uv_loop_init(&loop);
    auto r = notify_socket::open(&loop, "/tmp/otpd-notify-unit",
                                 [this](const notify_datagram& d) { got.push_back(d); });
    EXPECT_TRUE(r) << r.message();
    if (r) {
      s = std::move(*r);
    }
  }
  ~socket_fixture() {
    s.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }
  socket_fixture(const socket_fixture&) = delete;
  socket_fixture& operator=(const socket_fixture&) = delete;
  socket_fixture(socket_fixture&&) = delete;
  socket_fixture& operator=(socket_fixture&&) = delete;

  // Sends data (with fds as SCM_RIGHTS) to the socket; runs the loop until
  // the datagram has been read.
  void send(const std::string& data, const std::vector<int>& fds = {}) {
    ASSERT_TRUE(s);
    ASSERT_EQ(s->address()[0], '@');
    int e = otpd::testing::send_datagram(s->address(), data, fds);
    ASSERT_EQ(e, 0) << std::strerror(e);
    std::size_t before = got.size();
    for (int i = 0; i < 1000 && got.size() == before; ++i) {
      uv_run(&loop, UV_RUN_NOWAIT);
      if (got.size() == before) {
        ::usleep(1000);
      }
    }
    ASSERT_EQ(got.size(), before + 1);
  }
};

TEST(NotifySocket, AbstractAddressCredentialsAndFdsClosed) {
  socket_fixture f;
  ASSERT_TRUE(f.s);
  EXPECT_EQ(f.s->address().rfind("@otpd-notify-", 0), 0u) << f.s->address();
  f.send("READY=1");
  EXPECT_TRUE(f.got[0].has_creds);
  EXPECT_EQ(f.got[0].pid, ::getpid());
  EXPECT_EQ(f.got[0].uid, ::getuid());
  EXPECT_EQ(f.got[0].data, "READY=1");
  EXPECT_FALSE(f.got[0].oversized);
  // The fds a sender passes are closed at once: once our own copy of a
  // pipe's read end sent over is closed too, no reader is left (EPIPE).
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  f.send("BARRIER=1", {p[0]});
  ::close(p[0]);
  EXPECT_EQ(f.got[1].fds, 1);
  ::signal(SIGPIPE, SIG_IGN);
  EXPECT_EQ(::write(p[1], "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  ::close(p[1]);
}

TEST(NotifySocket, OversizedDatagramsAreFlaggedNotRead) {
  socket_fixture f;
  ASSERT_TRUE(f.s);
  f.send(std::string(notify_max_datagram, 'x'));
  EXPECT_FALSE(f.got[0].oversized);
  EXPECT_EQ(f.got[0].data.size(), notify_max_datagram);
  f.send(std::string(notify_max_datagram + 1, 'x'));
  EXPECT_TRUE(f.got[1].oversized);
  EXPECT_TRUE(f.got[1].data.empty());
  f.send(std::string(60000, 'y'));
  EXPECT_TRUE(f.got[2].oversized);
}

TEST(NotifySocket, TwoSocketsOfOneRuntimeDirHaveDistinctNames) {
  socket_fixture a;
  socket_fixture b;
  ASSERT_TRUE(a.s && b.s);
  EXPECT_NE(a.s->address(), b.s->address());
}

}  // namespace
}  // namespace otpd::supervisor::detail

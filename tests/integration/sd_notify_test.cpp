// otpd under a service manager that speaks sd_notify (systemd's
// Type=notify): READY=1 once the whole tree runs, RELOADING=1 / READY=1
// around a reload, STOPPING=1, STATUS= lines and WATCHDOG=1 pings, all to the
// datagram socket named by $NOTIFY_SOCKET, which the children never see.
// The service manager here is the test: it binds the socket and reads.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// The service manager's end: a datagram socket at path, or in the abstract
// namespace when path starts with '@'.
class notify_listener {
 public:
  explicit notify_listener(const std::string& path) : path_(path) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    path.copy(sa.sun_path, sizeof sa.sun_path - 1);
    if (path[0] == '@') {
      sa.sun_path[0] = '\0';
    }
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len), 0)
        << std::strerror(errno);
  }

  // The next datagram, or "" after timeout.
  std::string next(std::chrono::milliseconds timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      return {};
    }
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }

  // Reads datagrams until one contains want; returns it ("" on timeout).
  // Everything read on the way is kept in seen().
  std::string until(const std::string& want,
                    std::chrono::milliseconds timeout = testing::scaled(20s)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      std::string d = next(std::max(left, 1ms));
      if (d.empty()) {
        continue;
      }
      seen_.push_back(d);
      if (d.find(want) != std::string::npos) {
        return d;
      }
    }
    return {};
  }
  // Reads what is queued now (the manager's queue holds only about 10
  // datagrams: a test that stops reading for a while must catch up).
  void drain() {
    for (std::string d = next(0ms); !d.empty(); d = next(0ms)) {
      seen_.push_back(d);
    }
  }
  [[nodiscard]] const std::vector<std::string>& seen() const { return seen_; }

 private:
  std::string path_;
  core::unique_fd fd_;
  std::vector<std::string> seen_;
};

// NOTIFY_SOCKET and WATCHDOG_USEC for the otpd that start() launches (it
// inherits the test's environment), and not for anything after.
class scoped_env {
 public:
  scoped_env(const char* k, const std::string& v) : k_(k) { ::setenv(k, v.c_str(), 1); }
  ~scoped_env() { ::unsetenv(k_); }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  const char* k_;
};

std::string environ_of(pid_t pid) {
  std::string env = testing::read_file("/proc/" + std::to_string(pid) + "/environ");
  for (char& c : env) {
    c = c == '\0' ? '\n' : c;
  }
  return env;
}

TEST(SdNotify, ReadyOnceTheTreeRunsThenReloadStatusWatchdogAndStop) {
  otpd_node n;
  notify_listener sm(n.dir() + "/notify");
  {
    scoped_env s1("NOTIFY_SOCKET", n.dir() + "/notify");
    scoped_env s2("WATCHDOG_USEC", "200000");  // pings every 100 ms
    n.start(root_yaml("one_for_one", sleeper("a") + sleeper("b")), false);
  }
  std::string ready = sm.until("READY=1");
  ASSERT_FALSE(ready.empty()) << "no READY=1; otpd log:\n" << n.log();
  // Sent once every child runs, and it says so.
  EXPECT_NE(ready.find("STATUS=2 of 2 children running"), std::string::npos) << ready;
  EXPECT_EQ(n.state_of("a"), "running");
  EXPECT_EQ(n.state_of("b"), "running");
  // The loop pings the watchdog.
  ASSERT_FALSE(sm.until("WATCHDOG=1").empty());
  ASSERT_FALSE(sm.until("WATCHDOG=1").empty());
  // The children do not speak for otpd.
  std::string env = environ_of(n.pid_of("a"));
  EXPECT_EQ(env.find("NOTIFY_SOCKET="), std::string::npos) << env;
  EXPECT_EQ(env.find("WATCHDOG_USEC="), std::string::npos) << env;

  // A crash and its restart do not disturb the notifications.
  pid_t a = n.pid_of("a");
  ASSERT_EQ(::kill(a, SIGKILL), 0);
  ASSERT_GT(n.wait_running("a", a), 0);

  // SIGHUP: a reload, bracketed as systemd expects.
  sm.drain();
  n.signal(SIGHUP);
  std::string reloading = sm.until("RELOADING=1");
  ASSERT_FALSE(reloading.empty());
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos) << reloading;
  ASSERT_FALSE(sm.until("READY=1").empty()) << "no READY=1 after the reload";

  n.signal(SIGTERM);
  ASSERT_FALSE(sm.until("STOPPING=1").empty());
  EXPECT_EQ(n.wait_exit(), 0);
}

// The abstract namespace ('@'), as systemd in a container may hand out.
TEST(SdNotify, AbstractSocketAndNoWatchdogUnlessAsked) {
  otpd_node n;
  std::string name = "@otpd-notify-test-" + std::to_string(::getpid());
  notify_listener sm(name);
  {
    scoped_env s1("NOTIFY_SOCKET", name);
    // WATCHDOG_PID names another process: the watchdog is not otpd's.
    scoped_env s2("WATCHDOG_USEC", "100000");
    scoped_env s3("WATCHDOG_PID", "1");
    n.start(root_yaml("one_for_one", sleeper("a")), false);
  }
  ASSERT_FALSE(sm.until("READY=1").empty()) << n.log();
  // Two status ticks' worth of time: no ping. (The wait ends on a datagram or
  // the timeout; a WATCHDOG=1 would be the failure.)
  EXPECT_TRUE(sm.until("WATCHDOG=1", 2500ms).empty());
  n.signal(SIGTERM);
  ASSERT_FALSE(sm.until("STOPPING=1").empty());
  EXPECT_EQ(n.wait_exit(), 0);
}

// Without NOTIFY_SOCKET nothing changes (every other test runs that way);
// with one nobody listens on, otpd logs it once and runs on.
TEST(SdNotify, AnUnreachableServiceManagerNeverStopsOtpd) {
  otpd_node n;
  {
    scoped_env s1("NOTIFY_SOCKET", n.dir() + "/nobody-listens");
    n.start(root_yaml("one_for_one", sleeper("a")));
  }
  EXPECT_GT(n.wait_running("a"), 0);
  ASSERT_TRUE(testing::wait_until([&] {
    return n.log().find("unable to notify the service manager") != std::string::npos;
  })) << n.log();
  n.signal(SIGTERM);
  EXPECT_EQ(n.wait_exit(), 0);
}

}  // namespace
}  // namespace otpd::itest

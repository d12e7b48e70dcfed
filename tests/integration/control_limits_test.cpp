// The control socket under hostile or careless local clients: connection
// caps with room kept for otpctl and DOWN reasons, bounded queues with
// backpressure, idle close, request size and shape, otpctl's check of the
// socket's owner, the audit trail, failed reloads, fd exhaustion.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/supervisor/control_client.hpp>
#include <otpd/testing/otpd_node.hpp>
#include <otpd/testing/runtime_session.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;
using core::unique_fd;

constexpr uid_t nobody = 65534;

std::string with_control(const std::string& control, const std::string& children,
                         int max_restarts = -1, int max_seconds = 10) {
  return fmt::format("node:\n  control: {}\n{}", control,
                     root_yaml("one_for_one", children, max_restarts, max_seconds));
}

// A raw client: the tests need what control_client hides (timeouts,
// non-blocking writes, not reading).
unique_fd connect_to(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return {};
  }
  return fd;
}

bool send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// The next line from fd within the (scaled) timeout; nullopt on timeout,
// EOF or error. buf keeps what was read past the line.
std::optional<std::string> read_line(int fd, std::string& buf,
                                     std::chrono::milliseconds timeout = 10s) {
  auto until = std::chrono::steady_clock::now() + testing::scaled(timeout);
  for (;;) {
    if (auto nl = buf.find('\n'); nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return std::nullopt;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      return std::nullopt;
    }
    char tmp[65536];
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) {
      return std::nullopt;
    }
    buf.append(tmp, static_cast<std::size_t>(n));
  }
}

// Whether otpd has closed fd: EOF (or a reset) once what it sent is read.
bool closed_by_peer(int fd, std::chrono::milliseconds timeout = 10s) {
  auto until = std::chrono::steady_clock::now() + testing::scaled(timeout);
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      char tmp[65536];
      ssize_t n = ::read(fd, tmp, sizeof tmp);
      if (n <= 0) {
        return true;
      }
    }
  }
  return false;
}

// Whether otpd has closed fd, without reading what it sent (POLLRDHUP).
bool hung_up(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

long rss_kib(pid_t pid) {
  std::string s = testing::read_file(fmt::format("/proc/{}/status", pid));
  auto at = s.find("VmRSS:");
  return at == std::string::npos ? -1 : std::stol(s.substr(at + 6));
}

bool is_error_with(const std::string& line, const std::string& text) {
  json j = json::parse(line, nullptr, false);
  return j.is_object() && j.value("ok", true) == false &&
         j.value("error", std::string()).find(text) != std::string::npos;
}

TEST(ControlLimits, ConnectionCapKeepsRoomForOtpctlAndDownReasons) {
  otpd_node n;
  n.start(with_control("{max_connections: 4, idle_timeout: 3600}", sleeper("w")));
  testing::runtime_session session(n.rt());
  ASSERT_TRUE(session.ok()) << session.error().message();
  const std::string sock = n.rt() + "/control.sock";
  // The cap's worth of idle connections, answered: each has a regular slot.
  std::vector<unique_fd> regular;
  for (int i = 0; i < 4; ++i) {
    regular.push_back(connect_to(sock));
    ASSERT_TRUE(regular.back());
    std::string buf;
    ASSERT_TRUE(send_all(regular.back().get(), "{\"cmd\":\"ping\"}\n"));
    auto line = read_line(regular.back().get(), buf);
    ASSERT_TRUE(line.has_value());
    EXPECT_EQ(json::parse(*line)["ok"], true);
  }
  // Then a flood that fills the reserve and more, and holds it.
  std::vector<unique_fd> extra;
  for (int i = 0; i < 24; ++i) {
    extra.push_back(connect_to(sock));
    ASSERT_TRUE(extra.back());
  }
  // otpctl still answers, and a DOWN still carries the reason otpd saw (its
  // exit-reason query gets in, whatever the flood holds).
  std::string out;
  EXPECT_EQ(n.ctl("status", &out), 0) << out;
  pid_t w = n.wait_running("w");
  ASSERT_GT(w, 0);
  runtime::ref mon = runtime::monitor(w);
  shell_kill(w);
  auto down = runtime::receive_ref(mon, runtime::deadline::after(testing::scaled(10s)));
  ASSERT_TRUE(down.has_value());
  EXPECT_EQ(down->reason(), core::exit_reason::from_signal(SIGKILL)) << down->reason().to_string();
  // Every connection over the cap gets the error, then is closed.
  for (auto& fd : extra) {
    std::string buf;
    auto line = read_line(fd.get(), buf);
    ASSERT_TRUE(line.has_value()) << n.log();
    EXPECT_TRUE(is_error_with(*line, "too many control connections")) << *line;
    EXPECT_TRUE(closed_by_peer(fd.get()));
  }
  // The ones in the cap are untouched.
  for (auto& fd : regular) {
    std::string buf;
    ASSERT_TRUE(send_all(fd.get(), "{\"cmd\":\"ping\"}\n"));
    auto line = read_line(fd.get(), buf);
    ASSERT_TRUE(line.has_value());
    EXPECT_EQ(json::parse(*line)["ok"], true) << *line;
  }
  EXPECT_NE(n.log().find("too many control connections"), std::string::npos);
  // A one-shot connection may not subscribe.
  unique_fd sub = connect_to(sock);
  std::string buf;
  ASSERT_TRUE(send_all(sub.get(), "{\"cmd\":\"events\"}\n"));
  auto line = read_line(sub.get(), buf);
  ASSERT_TRUE(line.has_value());
  EXPECT_TRUE(is_error_with(*line, "need a free slot")) << *line;
  EXPECT_GT(n.wait_running("w", w), 0);
}

TEST(ControlLimits, NonReadingClientsAreThrottledAndOtpdMemoryStaysBounded) {
  otpd_node n;
  n.start(with_control("{max_connections: 64, idle_timeout: 3600}", sleeper("a")));
  const std::string sock = n.rt() + "/control.sock";
  long rss0 = rss_kib(n.pid());
  ASSERT_GT(rss0, 0);
  // 20 subscribers that never read.
  std::vector<unique_fd> subs;
  for (int i = 0; i < 20; ++i) {
    subs.push_back(connect_to(sock));
    ASSERT_TRUE(subs.back());
    ASSERT_TRUE(send_all(subs.back().get(), "{\"cmd\":\"events\"}\n"));
  }
  // Events for them: each refused restart is an audit event (about 600
  // bytes, its id cut at 256), from a client that reads its replies.
  auto all_hung_up = [&] {
    for (auto& s : subs) {
      if (!hung_up(s.get())) {
        return false;
      }
    }
    return true;
  };
  supervisor::control_client driver;
  ASSERT_TRUE(driver.connect(n.rt()).has_value());
  const std::string restart =
      fmt::format(R"({{"cmd":"restart","id":"nope-{}"}})", std::string(1000, 'x'));
  int sent_events = 0;
  while (!all_hung_up() && sent_events < 200000) {
    for (int i = 0; i < 100; ++i, ++sent_events) {
      auto r = driver.request(restart);
      ASSERT_TRUE(r.has_value());
    }
  }
  // Every non-reading subscriber was closed once its backlog was over the cap.
  EXPECT_TRUE(all_hung_up()) << sent_events << " events";
  EXPECT_NE(n.log().find("is not reading"), std::string::npos);
  // A client that pipelines requests and does not read the replies: otpd
  // stops reading it, so its writes stall well before 16 MiB.
  unique_fd pipe = connect_to(sock);
  ASSERT_TRUE(pipe);
  ASSERT_EQ(::fcntl(pipe.get(), F_SETFL, O_NONBLOCK), 0);
  const std::string req = "{\"cmd\":\"status\"}\n";
  std::string chunk;
  for (int i = 0; i < 256; ++i) {
    chunk += req;
  }
  std::size_t sent = 0;
  bool stalled = false;
  while (sent < (16u << 20)) {
    ssize_t k = ::send(pipe.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (k > 0) {
      sent += static_cast<std::size_t>(k);
      if (static_cast<std::size_t>(k) < chunk.size()) {
        // Keep the stream in whole lines: finish this chunk blocking-free.
        std::string rest = chunk.substr(static_cast<std::size_t>(k));
        while (!rest.empty()) {
          pollfd p{pipe.get(), POLLOUT, 0};
          if (::poll(&p, 1, static_cast<int>(testing::scaled(3s).count())) <= 0) {
            break;
          }
          ssize_t m = ::send(pipe.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
          if (m > 0) {
            sent += static_cast<std::size_t>(m);
            rest.erase(0, static_cast<std::size_t>(m));
          }
        }
        if (!rest.empty()) {
          stalled = true;
          break;
        }
      }
      continue;
    }
    ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
    pollfd p{pipe.get(), POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(testing::scaled(3s).count())) == 0) {
      stalled = true;  // otpd no longer reads this client: backpressure
      break;
    }
  }
  EXPECT_TRUE(stalled) << "otpd read " << sent << " bytes of requests nobody reads the replies of";
  long rss1 = rss_kib(n.pid());
  // Without the caps: 8 MiB per subscriber, and the replies of every request
  // read. A generous bound, not a measurement.
  EXPECT_LT(rss1 - rss0, 48 * 1024) << "RSS " << rss0 << " KiB -> " << rss1 << " KiB";
  // Reading again resumes the stalled client: every request it sent (whole
  // lines) gets its reply.
  ASSERT_EQ(::fcntl(pipe.get(), F_SETFL, 0), 0);
  std::size_t requests = sent / req.size();
  std::string buf;
  std::size_t replies = 0;
  while (replies < requests) {
    auto line = read_line(pipe.get(), buf, 30s);
    ASSERT_TRUE(line.has_value()) << replies << " of " << requests;
    json j = json::parse(*line, nullptr, false);
    if (j.is_object() && j.contains("ok")) {
      ASSERT_EQ(j["ok"], true) << *line;
      ++replies;
    }
  }
  EXPECT_EQ(n.ctl("status"), 0);
}

TEST(ControlLimits, IdleConnectionsAreClosedSubscribersAreNot) {
  otpd_node n;
  n.start(with_control("{idle_timeout: 1}", sleeper("a")));
  const std::string sock = n.rt() + "/control.sock";
  unique_fd sub = connect_to(sock);
  unique_fd idle = connect_to(sock);
  ASSERT_TRUE(sub && idle);
  std::string sbuf;
  ASSERT_TRUE(send_all(sub.get(), "{\"cmd\":\"events\"}\n"));
  ASSERT_TRUE(read_line(sub.get(), sbuf).has_value());
  std::string buf;
  auto line = read_line(idle.get(), buf);
  ASSERT_TRUE(line.has_value());
  EXPECT_TRUE(is_error_with(*line, "idle for")) << *line;
  EXPECT_TRUE(closed_by_peer(idle.get()));
  // The subscriber, as old as the idle one, still answers.
  ASSERT_TRUE(send_all(sub.get(), "{\"cmd\":\"ping\"}\n"));
  for (;;) {
    auto l = read_line(sub.get(), sbuf);
    ASSERT_TRUE(l.has_value());
    json j = json::parse(*l);
    if (j.contains("ok")) {
      EXPECT_EQ(j["ok"], true);
      break;
    }
  }
}

TEST(ControlLimits, MalformedRequestsGetErrorsAndTheConnectionSurvives) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a")));
  unique_fd fd = connect_to(n.rt() + "/control.sock");
  ASSERT_TRUE(fd);
  struct bad {
    std::string line;
    std::string error;
  };
  const std::vector<bad> cases = {
      {"not json", "malformed request"},
      {"[1,2,3]", "malformed request"},
      {"{\"cmd\":5}", "malformed request"},
      {"{\"nocmd\":1}", "malformed request"},
      {"{\"cmd\":\"stop\",\"id\":5}", "bad request"},
      {"{\"cmd\":\"kill\",\"id\":\"a\",\"signal\":[1]}", "bad request"},
      {"{\"cmd\":\"start-child\",\"supervisor\":\"/\",\"args\":[1]}", "bad request"},
      {"{\"cmd\":\"monitor\",\"pid\":\"x\"}", "bad request"},
      {"{\"cmd\":\"stop\",\"id\":\"\xff\xfe\"}", "malformed request"},
      {std::string(60000, '['), "malformed request"},
      {"{\"cmd\":\"frobnicate\"}", "unknown command"},
  };
  std::string buf;
  for (const auto& c : cases) {
    ASSERT_TRUE(send_all(fd.get(), c.line + "\n"));
    auto line = read_line(fd.get(), buf);
    ASSERT_TRUE(line.has_value()) << c.line.substr(0, 80);
    EXPECT_TRUE(is_error_with(*line, c.error)) << c.line.substr(0, 80) << " -> " << *line;
  }
  ASSERT_TRUE(send_all(fd.get(), "{\"cmd\":\"ping\"}\n"));
  auto line = read_line(fd.get(), buf);
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(json::parse(*line)["ok"], true);
  // A line over the bound: an error, then the connection is closed; otpd lives on.
  ASSERT_TRUE(send_all(fd.get(), std::string(100000, 'x')));
  line = read_line(fd.get(), buf);
  ASSERT_TRUE(line.has_value());
  EXPECT_TRUE(is_error_with(*line, "request line over")) << *line;
  EXPECT_TRUE(closed_by_peer(fd.get()));
  EXPECT_EQ(n.ctl("status"), 0);
}

TEST(ControlLimits, AuditTrailCarriesThePeersUidAndPid) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a")));
  n.wait_running("a");
  supervisor::control_client c;
  ASSERT_TRUE(c.connect(n.rt()).has_value());
  EXPECT_EQ(json::parse(*c.request(R"({"cmd":"stop","id":"a"})"))["ok"], true);
  EXPECT_EQ(json::parse(*c.request(R"({"cmd":"restart","id":"nope"})"))["ok"], false);
  ASSERT_TRUE(n.wait_state("a", "stopped"));
  EXPECT_EQ(json::parse(*c.request(R"({"cmd":"status"})"))["ok"], true);  // a read: not audited
  std::string out;
  ASSERT_EQ(n.ctl("events", &out), 0);
  std::vector<json> commands;
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    json j = json::parse(l);
    if (j["event"] == "command") {
      commands.push_back(j);
    }
  }
  ASSERT_EQ(commands.size(), 2u) << out;
  EXPECT_EQ(commands[0]["cmd"], "stop");
  EXPECT_EQ(commands[0]["path"], "a");
  EXPECT_EQ(commands[0]["peer_uid"], ::geteuid());
  EXPECT_EQ(commands[0]["peer_pid"], ::getpid());
  EXPECT_NE(commands[0]["detail"].get<std::string>().find(": ok"), std::string::npos);
  EXPECT_EQ(commands[1]["cmd"], "restart");
  EXPECT_NE(commands[1]["detail"].get<std::string>().find("no such child"), std::string::npos);
  EXPECT_NE(n.log().find(
                fmt::format("otpd: control: stop a by uid {} pid {}: ok", ::geteuid(), ::getpid())),
            std::string::npos)
      << n.log();
}

TEST(ControlLimits, AReloadThatFailsLeavesTheTreeAndSaysWhy) {
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a")));
  pid_t a = n.wait_running("a");
  std::ofstream(n.config_path()) << "supervisor: [\n";
  n.signal(SIGHUP);
  ASSERT_TRUE(testing::wait_until([&] {
    return n.log().find("reload refused") != std::string::npos;
  })) << n.log();
  EXPECT_NE(n.log().find("the running tree is unchanged"), std::string::npos);
  EXPECT_NE(n.log().find("otpd: control: reload by SIGHUP: "), std::string::npos) << n.log();
  EXPECT_EQ(n.pid_of("a"), a);
  std::string out;
  EXPECT_EQ(n.ctl("reload", &out), 1);
  EXPECT_NE(out.find(n.config_path()), std::string::npos) << out;
  EXPECT_EQ(n.pid_of("a"), a);
}

// Runs fn in a child process as nobody; its exit status.
template <class Fn>
int as_nobody(Fn fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) {
      ::_exit(120);
    }
    ::_exit(fn());
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(ControlLimits, NobodyCannotConnect) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to become nobody";
  }
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a")));
  std::string sock = n.rt() + "/control.sock";
  int rc = as_nobody([&] {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      return 1;
    }
    return errno == EACCES ? 0 : 2;
  });
  EXPECT_EQ(rc, 0) << "nobody reached the control socket (1) or failed otherwise (2)";
  EXPECT_EQ(n.ctl("status"), 0);
}

TEST(ControlLimits, OtpctlRefusesASocketOfAnotherUser) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to become nobody";
  }
  testing::temp_dir d;
  std::string dir = d.path() + "/rt";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), nobody, nobody), 0);
  ASSERT_EQ(::chmod(d.path().c_str(), 0755), 0);
  int ready[2];
  int report[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  std::string sock = dir + "/control.sock";
  // A fake otpd as nobody: listens, and reports how many bytes a client sent.
  pid_t fake = ::fork();
  if (fake == 0) {
    if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) {
      ::_exit(120);
    }
    int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 4) != 0) {
      ::_exit(121);
    }
    (void)::write(ready[1], "r", 1);
    int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    long total = 0;
    char buf[4096];
    ssize_t k;
    while (c >= 0 && (k = ::read(c, buf, sizeof buf)) > 0) {
      total += k;
    }
    (void)::write(report[1], &total, sizeof total);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(report[1]);
  char r = 0;
  ASSERT_EQ(::read(ready[0], &r, 1), 1);
  int st = 0;
  std::string out =
      testing::sh_output(fmt::format("{} --runtime-dir {} status 2>&1",
                                     testing::shell_quote(testing::bin_path("otpctl")), dir),
                         &st);
  EXPECT_EQ(WEXITSTATUS(st), 111) << out;
  EXPECT_NE(out.find("refusing to talk to"), std::string::npos) << out;
  EXPECT_NE(out.find("uid 65534"), std::string::npos) << out;
  long total = -1;
  pollfd p{report[0], POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(testing::scaled(10s).count())) <= 0) {
    ::kill(fake, SIGKILL);  // otpctl never connected: do not wait for the fake forever
  }
  EXPECT_EQ(::read(report[0], &total, sizeof total), static_cast<ssize_t>(sizeof total));
  EXPECT_EQ(total, 0) << "otpctl sent bytes to a socket it should not trust";
  ::close(ready[0]);
  ::close(report[0]);
  ::waitpid(fake, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

// The lowest fd number not open in pid: with RLIMIT_NOFILE set to it, pid
// can open nothing more.
int lowest_free_fd(pid_t pid) {
  std::set<int> open;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
    open.insert(std::stoi(e.path().filename().string()));
  }
  int k = 0;
  while (open.count(k) != 0) {
    ++k;
  }
  return k;
}

TEST(ControlLimits, OutOfFdsIsReportedAndIsNoFailedStart) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to set otpd's fd limit";
  }
  otpd_node n;
  n.start(root_yaml("one_for_one", sleeper("a", ", stdout: null"), 1, 10));
  pid_t a = n.wait_running("a");
  ASSERT_GT(a, 0);
  rlimit old{};
  ASSERT_EQ(::prlimit(n.pid(), RLIMIT_NOFILE, nullptr, &old), 0);
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free_fd(n.pid()));
  ASSERT_EQ(::prlimit(n.pid(), RLIMIT_NOFILE, &tight, nullptr), 0);
  // A control connection otpd cannot accept: logged, closed, no spin.
  unique_fd fd = connect_to(n.rt() + "/control.sock");
  ASSERT_TRUE(fd);
  EXPECT_TRUE(closed_by_peer(fd.get()));
  ASSERT_TRUE(testing::wait_until([&] {
    return n.log().find("unable to accept a control connection") != std::string::npos;
  })) << n.log();
  // A restart that cannot make its pipes: out of fds, retried, not a failed
  // start of the child (with max_restarts 1, two failures would end the node).
  shell_kill(a);
  ASSERT_TRUE(testing::wait_until([&] {
    return n.log().find("out of file descriptors (") != std::string::npos;
  })) << n.log();
  ASSERT_EQ(::prlimit(n.pid(), RLIMIT_NOFILE, &old, nullptr), 0);
  pid_t b = n.wait_running("a", a);
  EXPECT_GT(b, 0) << n.log();
  EXPECT_EQ(n.log().find("start_failed"), std::string::npos) << n.log();
  json st = n.status();
  EXPECT_EQ(otpd_node::find(st, "a")["restarts"], 1) << st.dump();
}

}  // namespace
}  // namespace otpd::itest

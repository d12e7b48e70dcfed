// Captured output with a real otpd: whole lines (never split by a rotation),
// a partial line written once it has waited, per-stream timestamps, bytes
// that are not UTF-8 kept in the file without breaking status or events,
// inherit_prefixed lines on otpd's own output, and otpctl logs (-n, -f across
// rotations, clear errors).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <otpd/core/spawn.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// "2026-12-02T10:01:02.345Z "
const std::string stamp = R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z )";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    out.push_back(l);
  }
  return out;
}

// A worker running otpd_test_child with args (YAML list items), plus extra.
std::string worker(const std::string& id, const std::string& args, const std::string& extra) {
  return fmt::format("    - {{id: {}, command: [{}, {}]{}}}\n", id, otpd_node::child(), args,
                     extra);
}

// The files of a rotated log: path.keep .. path.1, path (oldest first).
std::vector<std::string> rotated_files(const std::string& path, int keep) {
  std::vector<std::string> out;
  for (int i = keep; i >= 1; --i) {
    if (fs::exists(path + "." + std::to_string(i))) {
      out.push_back(path + "." + std::to_string(i));
    }
  }
  if (fs::exists(path)) {
    out.push_back(path);
  }
  return out;
}

TEST(Logs, LinesAreNeverSplitAcrossRotation) {
  otpd_node n;
  std::string log = n.dir() + "/logs/spam.log";
  n.start(root_yaml("one_for_one",
                    worker("spam", "spam, 2000, print, done, sleep",
                           fmt::format(", stdout: {{file: {}, max_size: 8K, keep: 100}}", log))));
  std::regex line(stamp + std::string(99, 'x'));
  // "done" comes through the same pipe after the 2000 lines: once it is
  // in the file, so is every line before it.
  ASSERT_TRUE(testing::wait_until([&] {
    std::string last = testing::read_file(log);
    return last.size() >= 5 && last.compare(last.size() - 5, 5, "done\n") == 0;
  })) << testing::read_file(log);
  std::size_t total = 0;
  for (const auto& f : rotated_files(log, 100)) {
    total += lines_of(testing::read_file(f)).size();
  }
  auto files = rotated_files(log, 100);
  EXPECT_GT(files.size(), 10u);  // 2000 lines of 125 bytes in 8 KiB files: ~31 of them
  for (const auto& f : files) {
    std::string text = testing::read_file(f);
    EXPECT_LE(text.size(), 8192u) << f;
    ASSERT_FALSE(text.empty()) << f;
    EXPECT_EQ(text.back(), '\n') << f;
    for (const auto& l : lines_of(text)) {
      if (f != log || l.find("done") == std::string::npos) {
        ASSERT_TRUE(std::regex_match(l, line)) << f << ": [" << l << "]";
      }
    }
  }
  EXPECT_EQ(total, 2001u);
}

TEST(Logs, APartialLineIsWrittenAfterAShortDelay) {
  otpd_node n;
  std::string log = n.dir() + "/p.log";
  n.start(root_yaml("one_for_one",
                    worker("p", "write, 'waiting for input> ', sleep", ", stdout: " + log)));
  pid_t pid = n.wait_running("p");
  ASSERT_GT(pid, 0);
  std::regex whole(stamp + "waiting for input> \n");
  // The child never ends the line and keeps running: otpd writes it, as a
  // line, once it has waited (100 ms), not at the child's exit.
  ASSERT_TRUE(testing::wait_until([&] { return std::regex_match(testing::read_file(log), whole); }))
      << "[" << testing::read_file(log) << "]";
  EXPECT_EQ(n.pid_of("p"), pid);
}

TEST(Logs, TimestampsFollowEachStreamsSetting) {
  otpd_node n;
  std::string out = n.dir() + "/out.log";
  std::string err = n.dir() + "/err.log";
  n.start(root_yaml(
      "one_for_one",
      worker("t", "print, stamped, eprint, plain, sleep",
             fmt::format(", stdout: {}, stderr: {{file: {}, timestamps: false}}", out, err))));
  ASSERT_TRUE(testing::wait_until(
      [&] { return !testing::read_file(out).empty() && !testing::read_file(err).empty(); }));
  EXPECT_TRUE(std::regex_match(testing::read_file(out), std::regex(stamp + "stamped\n")))
      << testing::read_file(out);
  EXPECT_EQ(testing::read_file(err), "plain\n");
}

// Bytes a child writes are its own business: the file keeps them; status,
// events and otpctl keep working (JSON never sees them unreplaced).
TEST(Logs, OutputThatIsNotUtf8IsKeptAndBreaksNothing) {
  otpd_node n;
  std::string log = n.dir() + "/u.log";
  const std::string bytes("bad \xff\xfe\xc3 bytes", 13);
  n.start(root_yaml("one_for_one", worker("u", "write, 'bad \\xff\\xfe\\xc3 bytes\\n', sleep",
                                          ", stdout: " + log) +
                                       worker("v", "write, 'bad \\xff\\xfe\\xc3 bytes\\n', sleep",
                                              ", stdout: inherit_prefixed")));
  ASSERT_TRUE(testing::wait_until([&] {
    return testing::read_file(log).find(bytes + "\n") != std::string::npos &&
           n.log().find("[v] " + bytes + "\n") != std::string::npos;
  })) << testing::read_file(log);
  EXPECT_TRUE(std::regex_match(testing::read_file(log), std::regex(stamp + "bad .* bytes\n")));
  pid_t pid = n.pid_of("u");
  shell_kill(pid);
  ASSERT_GT(n.wait_running("u", pid), 0);
  json st = n.status();
  ASSERT_FALSE(st.is_null());
  EXPECT_EQ(otpd_node::find(st, "u")["stdout_path"], log);
  std::string events;
  ASSERT_EQ(n.ctl("events", &events), 0) << events;
  bool exited = false;
  for (const auto& l : lines_of(events)) {
    json e = json::parse(l, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << l;
    ASSERT_TRUE(e.contains("time")) << l;
    EXPECT_TRUE(std::regex_match(e["time"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << l;
    exited = exited || (e["event"] == "exited" && e["path"] == "u");
  }
  EXPECT_TRUE(exited) << events;
  std::string tail;
  ASSERT_EQ(n.ctl("logs u -n 1", &tail), 0) << tail;
  EXPECT_NE(tail.find(bytes + "\n"), std::string::npos) << tail;
  // otpd's own lines carry the time too.
  EXPECT_TRUE(std::regex_search(n.log(), std::regex("(^|\n)" + stamp + R"(otpd\[\d+\]: )")))
      << n.log();
}

TEST(Logs, InheritPrefixedPutsTheChildsPathInFrontOfEachLine) {
  otpd_node n;
  n.start(fmt::format(
      "supervisor:\n  strategy: one_for_one\n  children:\n"
      "    - id: web\n      strategy: one_for_one\n      children:\n"
      "    {}    {}",
      worker("api", "print, hello, eprint, oops, write, half, sleep",
             ", stdout: inherit_prefixed, stderr: inherit_prefixed"),
      worker("ts", "print, stamped, sleep", ", stdout: {to: inherit_prefixed, timestamps: true}")));
  ASSERT_TRUE(testing::wait_until([&] {
    std::string l = n.log();
    return l.find("[web/api] hello\n") != std::string::npos &&
           l.find("[web/api] oops\n") != std::string::npos &&
           l.find("[web/api] half\n") != std::string::npos &&
           l.find("[web/ts] stamped\n") != std::string::npos;
  })) << n.log();
  EXPECT_TRUE(std::regex_search(n.log(), std::regex("(^|\n)" + stamp + R"(\[web/ts\] stamped\n)")))
      << n.log();
  json st = n.status();
  EXPECT_FALSE(otpd_node::find(st, "web/api").contains("stdout_path")) << st;
  std::string msg;
  EXPECT_EQ(n.ctl("logs web/api", &msg), 1);
  EXPECT_NE(msg.find("web/api's stdout is not written to a file"), std::string::npos) << msg;
}

TEST(Logs, OtpctlLogsPrintsTheTailFromTheRotatedFileToo) {
  otpd_node n;
  std::string log = n.dir() + "/w.log";
  // 30 lines of 125 bytes in 2 KiB files: 16 in w.log.1, 14 in w.log.
  n.start(root_yaml("one_for_one",
                    worker("w", "spam, 30, sleep",
                           fmt::format(", stdout: {{file: {}, max_size: 2K, keep: 5}}", log))));
  ASSERT_TRUE(testing::wait_until([&] {
    return lines_of(testing::read_file(log + ".1")).size() +
               lines_of(testing::read_file(log)).size() ==
           30;
  }));
  std::string out;
  ASSERT_EQ(n.ctl("logs w -n 20", &out), 0) << out;
  auto got = lines_of(out);
  ASSERT_EQ(got.size(), 20u) << out;
  for (const auto& l : got) {
    EXPECT_TRUE(std::regex_match(l, std::regex(stamp + std::string(99, 'x')))) << l;
  }
  ASSERT_EQ(n.ctl("logs w -n 3", &out), 0) << out;
  EXPECT_EQ(lines_of(out).size(), 3u) << out;
  ASSERT_EQ(n.ctl("logs w", &out), 0) << out;
  EXPECT_EQ(lines_of(out).size(), 10u) << out;

  EXPECT_EQ(n.ctl("logs w --stderr", &out), 1);
  EXPECT_NE(out.find("w's stderr is not written to a file"), std::string::npos) << out;
  EXPECT_EQ(n.ctl("logs nope", &out), 1);
  EXPECT_NE(out.find("no such child"), std::string::npos) << out;
}

TEST(Logs, OtpctlLogsFollowsAcrossRotations) {
  otpd_node n;
  std::string log = n.dir() + "/f.log";
  // The child paces itself (a line every 5 ms); lines of ~40 bytes in 1 KiB
  // files: a rotation every ~25 lines.
  n.start(root_yaml(
      "one_for_one",
      fmt::format(
          "    - {{id: f, shell: true, command: 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); "
          "echo line $i; sleep 0.005; done; sleep 1000', "
          "stdout: {{file: {}, max_size: 1K, keep: 3}}}}\n",
          log)));
  ASSERT_GT(n.wait_running("f"), 0);
  ASSERT_TRUE(testing::wait_until([&] { return fs::exists(log); }));
  std::string followed = n.dir() + "/followed.txt";
  int fd = ::open(followed.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  core::spawn_options o;
  o.argv = {testing::bin_path("otpctl"), "--runtime-dir", n.rt(), "logs", "f", "-n", "1", "-f"};
  o.fds = {{-1, 0}, {fd, 1}, {fd, 2}};
  auto r = core::spawn(o);
  ::close(fd);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  // 200 lines: some eight rotations while it follows.
  std::vector<long> seen;
  bool enough = testing::wait_until(
      [&] {
        seen.clear();
        for (const auto& l : lines_of(testing::read_file(followed))) {
          auto at = l.find("line ");
          if (at != std::string::npos) {
            seen.push_back(std::stol(l.substr(at + 5)));
          }
        }
        return seen.size() >= 200;
      },
      60s);
  (void)core::kill_and_reap(r->pid, SIGTERM, core::deadline::after(testing::scaled(10s)),
                            r->pidfd.get());
  ASSERT_TRUE(enough) << testing::read_file(followed);
  // Every line once, in order, none lost at a rotation.
  for (std::size_t i = 1; i < seen.size(); ++i) {
    ASSERT_EQ(seen[i], seen[i - 1] + 1) << "at " << i << ":\n" << testing::read_file(followed);
  }
  EXPECT_TRUE(fs::exists(log + ".3"));
  EXPECT_EQ(testing::read_file(followed).find("otpctl:"), std::string::npos)
      << testing::read_file(followed);
}

// A stand-in for journald's stdout socket or syslog's /dev/log, where no
// journald runs (CI): a Unix socket in a temp dir that keeps what it gets,
// with otpd pointed at it by OTPD_JOURNAL_SOCKET / OTPD_SYSLOG_SOCKET.
class standin {
 public:
  standin(const char* env, int type) : env_(env), type_(type) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    fd_.reset(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    if (type == SOCK_STREAM) {
      EXPECT_EQ(::listen(fd_.get(), 64), 0);
    }
    ::setenv(env_, path_.c_str(), 1);
    thread_ = std::thread([this] { serve(); });
  }
  ~standin() {
    ::unsetenv(env_);
    stop_ = true;
    thread_.join();
  }
  standin(const standin&) = delete;
  standin& operator=(const standin&) = delete;
  standin(standin&&) = delete;
  standin& operator=(standin&&) = delete;

  // Each connection's bytes (stream), or each datagram.
  [[nodiscard]] std::vector<std::string> got() {
    std::lock_guard<std::mutex> l(mu_);
    return got_;
  }
  // Whether one of them contains text.
  [[nodiscard]] bool has(const std::string& text) {
    for (const auto& g : got()) {
      if (g.find(text) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

 private:
  void serve() {
    std::vector<core::unique_fd> conns;
    std::vector<std::size_t> slot;
    char buf[65536];
    while (!stop_) {
      std::vector<pollfd> p{{fd_.get(), POLLIN, 0}};
      for (const auto& c : conns) {
        p.push_back({c.get(), POLLIN, 0});
      }
      if (::poll(p.data(), p.size(), 50) <= 0) {
        continue;
      }
      if ((p[0].revents & POLLIN) != 0) {
        if (type_ == SOCK_STREAM) {
          conns.emplace_back(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
          std::lock_guard<std::mutex> l(mu_);
          slot.push_back(got_.size());
          got_.emplace_back();
        } else {
          ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
          std::lock_guard<std::mutex> l(mu_);
          got_.emplace_back(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        }
      }
      for (std::size_t i = 1; i < p.size(); ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP)) != 0) {
          ssize_t n = ::read(p[i].fd, buf, sizeof buf);
          if (n > 0) {
            std::lock_guard<std::mutex> l(mu_);
            got_[slot[i - 1]].append(buf, static_cast<std::size_t>(n));
          }
        }
      }
    }
  }

  const char* env_;
  int type_;
  testing::temp_dir dir_{"otpd-standin"};
  std::string path_ = dir_.path() + "/sock";
  core::unique_fd fd_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> got_;
  std::thread thread_;
};

TEST(Logs, JournaldStreamsCarryTheChildsPathAndOtpdsOwnLines) {
  standin journal("OTPD_JOURNAL_SOCKET", SOCK_STREAM);
  otpd_node n;
  n.start("node:\n  log_target: journald\n" +
          root_yaml("one_for_one", worker("j", "print, to-the-journal, eprint, an-error, sleep",
                                          ", stdout: journald, stderr: {to: journald}")));
  // Each stream: the header (identifier, unit, priority, level prefix,
  // three forwards), then the lines as the child wrote them.
  ASSERT_TRUE(testing::wait_until([&] {
    return journal.has("j\n\n6\n0\n0\n0\n0\nto-the-journal\n") &&
           journal.has("j\n\n3\n0\n0\n0\n0\nan-error\n");
  })) << fmt::format("{}", fmt::join(journal.got(), "\n---\n"));
  // otpd's own events, at their level, without a time of their own.
  ASSERT_TRUE(testing::wait_until([&] {
    return journal.has("otpd\n\n6\n1\n0\n0\n0\n") && journal.has("<6>j started pid ");
  })) << fmt::format("{}", fmt::join(journal.got(), "\n---\n"));
}

TEST(Logs, SyslogGetsALineAMessageWithTheChildsPath) {
  standin syslog("OTPD_SYSLOG_SOCKET", SOCK_DGRAM);
  otpd_node n;
  n.start("node:\n  log_target: syslog\n" +
          root_yaml("one_for_one",
                    worker("s", "print, hello, print, world, sleep", ", stdout: syslog")));
  std::regex user_info(R"(<14>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d s: (hello|world))");
  std::regex daemon_info(
      R"(<30>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d otpd\[\d+\]: s started pid .*)");
  ASSERT_TRUE(testing::wait_until([&] {
    int lines = 0;
    bool own = false;
    for (const auto& m : syslog.got()) {
      lines += std::regex_match(m, user_info) ? 1 : 0;
      own = own || std::regex_match(m, daemon_info);
    }
    return lines == 2 && own;
  })) << fmt::format("{}", fmt::join(syslog.got(), "\n"));
}

// No journal at start: otpd refuses to start and says why; --check warns
// and passes, so that a packaged config validates anywhere.
TEST(Logs, AnUnreachableJournalStopsTheStartButOnlyWarnsInCheck) {
  testing::temp_dir nowhere("otpd-nojournal");
  ::setenv("OTPD_JOURNAL_SOCKET", (nowhere.path() + "/absent").c_str(), 1);
  otpd_node n;
  std::string yaml = root_yaml("one_for_one", worker("j", "sleep", ", stdout: journald"));
  n.write_config(yaml);
  int st = 0;
  std::string check = testing::sh_output(
      fmt::format("{} --check {} 2>&1", testing::shell_quote(testing::bin_path("otpd")),
                  testing::shell_quote(n.config_path())),
      &st);
  EXPECT_EQ(WEXITSTATUS(st), 0) << check;
  EXPECT_NE(check.find("warning: j's stdout: journald: unable to reach the journal"),
            std::string::npos)
      << check;
  n.start(yaml, false);
  EXPECT_EQ(n.wait_exit(), 1);
  ::unsetenv("OTPD_JOURNAL_SOCKET");
  EXPECT_NE(n.log().find("j's stdout: journald: unable to reach the journal (" + nowhere.path() +
                         "/absent: No such file or directory"),
            std::string::npos)
      << n.log();
  EXPECT_NE(n.log().find("not starting"), std::string::npos) << n.log();
}

}  // namespace
}  // namespace otpd::itest

// A hostile local user against a real otpd: the attacker is a forked process
// that drops to `nobody` (these need root to do that, and are reported as
// skipped, not passed, without it), or, for a mailbox flood, a process of
// the node's own user whose bytes are never trusted (docs/SECURITY.md).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "wire.hpp"
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/protocol/layout.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/testing/otpd_node.hpp>
#include <otpd/testing/runtime_session.hpp>

namespace otpd::itest {
namespace {

namespace fs = std::filesystem;
namespace layout = protocol::layout;
using core::unique_fd;

#define REQUIRE_ROOT()                                                            \
  if (::geteuid() != 0) {                                                         \
    GTEST_SKIP() << "needs root: the attacker is a process that drops to nobody"; \
  }

// Runs fn in a forked process that has become nobody (no supplementary
// groups); returns its exit code, 99 when it could not drop to nobody.
int as_nobody(const std::function<int()>& fn) {
  struct passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr) {
    ADD_FAILURE() << "no user nobody";
    return 99;
  }
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
      ::_exit(99);
    }
    ::_exit(fn());
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 98;
}

uid_t nobody_uid() {
  struct passwd* pw = ::getpwnam("nobody");
  return pw != nullptr ? pw->pw_uid : 65534;
}

// A directory every user may write, sticky, as /tmp: where a predictable
// path can be taken by whoever comes first.
struct shared_dir {
  testing::temp_dir d{"otpd-sh"};
  shared_dir() { fs::permissions(d.path(), fs::perms(01777)); }
  [[nodiscard]] std::string operator/(const std::string& name) const {
    return d.path() + "/" + name;
  }
};

// connect(2) to a Unix socket path; the errno, 0 when it connected.
int connect_errno(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 ? 0 : errno;
}

unique_fd connect_to(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return {};
  }
  return fd;
}

void start_stack(otpd_node& n) {
  n.start(
      root_yaml("one_for_one",
                fmt::format("    - {{id: stack, name: stack, command: [{}], readiness: notify}}\n",
                            testing::bin_path("stack_worker"))));
  ASSERT_GT(n.wait_running("stack"), 0) << n.log();
}

// otpd started by hand on runtime dir rt: what it printed, and its status.
// `timeout` ends it if it was fooled into running.
std::string run_otpd_on(const std::string& rt, int* status) {
  testing::temp_dir d{"otpd-h"};
  std::string cfg = d.path() + "/otpd.yaml";
  std::ofstream(cfg) << root_yaml("one_for_one", sleeper("a"));
  return testing::sh_output(fmt::format("timeout 20 {} {} --runtime-dir {} 2>&1",
                                        testing::shell_quote(testing::bin_path("otpd")),
                                        testing::shell_quote(cfg), testing::shell_quote(rt)),
                            status);
}

// /tmp/otpd-<uid> is a predictable name: another user who makes it first
// must not get otpd's sockets inside a directory they own.
TEST(Hostile, ARuntimeDirMadeByAnotherUserIsRefused) {
  REQUIRE_ROOT();
  shared_dir shared;
  std::string rt = shared / "rt";
  ASSERT_EQ(as_nobody([&] { return ::mkdir(rt.c_str(), 0777) == 0 ? 0 : 1; }), 0);
  int status = 0;
  std::string out = run_otpd_on(rt, &status);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << out;  // refused at once, not ended by timeout (124)
  EXPECT_NE(out.find(fmt::format("unable to create runtime dir {}: ", rt)), std::string::npos)
      << out;
  EXPECT_NE(out.find(fmt::format("(it is owned by uid {} (nobody), not by otpd's user, uid 0)",
                                 nobody_uid())),
            std::string::npos)
      << out;
  EXPECT_TRUE(fs::is_empty(rt));  // no socket, lock or directory of otpd's in it
  struct stat st {};
  ASSERT_EQ(::stat(rt.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody_uid());

  // A symlink there instead, to a directory of nobody's: not followed.
  std::string theirs = shared / "theirs";
  std::string link = shared / "rt2";
  ASSERT_EQ(as_nobody([&] {
              return ::mkdir(theirs.c_str(), 0777) == 0 &&
                             ::symlink(theirs.c_str(), link.c_str()) == 0
                         ? 0
                         : 1;
            }),
            0);
  out = run_otpd_on(link, &status);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << out;
  EXPECT_NE(out.find(fmt::format("unable to create runtime dir {}: ", link)), std::string::npos)
      << out;
  EXPECT_NE(out.find("(it is a symbolic link, not followed)"), std::string::npos) << out;
  EXPECT_TRUE(fs::is_empty(theirs));
}

// Log paths another user could prepare: a log directory of their own with a
// symlink at the log path, a symlink and a file of theirs in a shared sticky
// directory. otpd refuses each log (saying why), never writes through them,
// and the children run all the same (a log problem never stops the node).
TEST(Hostile, LogPathsPreparedByAnotherUserAreRefusedNotFollowed) {
  REQUIRE_ROOT();
  otpd_node n;
  shared_dir shared;
  std::string precious = n.dir() + "/precious";
  std::ofstream(precious) << "precious\n";
  std::string own_dir = shared / "logs";
  std::string in_own_dir = own_dir + "/a.log";
  std::string link = shared / "b.log";
  std::string theirs = shared / "c.log";
  ASSERT_EQ(as_nobody([&] {
              bool ok = ::mkdir(own_dir.c_str(), 0755) == 0 &&
                        ::symlink(precious.c_str(), in_own_dir.c_str()) == 0 &&
                        ::symlink(precious.c_str(), link.c_str()) == 0;
              unique_fd f(::open(theirs.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
              return ok && f ? 0 : 1;
            }),
            0);
  std::string children;
  for (const auto& [id, path] : std::vector<std::pair<std::string, std::string>>{
           {"a", in_own_dir}, {"b", link}, {"c", theirs}}) {
    children += fmt::format("    - {{id: {}, command: [{}, print, hello, sleep], stdout: {}}}\n",
                            id, otpd_node::child(), path);
  }
  n.start(root_yaml("one_for_one", children));
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_GT(n.wait_running(id), 0) << n.log();
  }
  std::vector<std::string> said{
      fmt::format("the log directory {} is owned by uid {} (nobody), not by otpd's user or root",
                  own_dir, nobody_uid()),
      fmt::format("log file {} is a symbolic link: refused, not followed", link),
      // Refused by otpd's owner check, or by the kernel first where
      // fs.protected_regular is set: either way not opened.
      fmt::format("log file {} ", theirs)};
  for (const std::string& s : said) {
    EXPECT_TRUE(testing::wait_until([&] { return n.log().find(s) != std::string::npos; }))
        << s << "\n"
        << n.log();
  }
  EXPECT_EQ(testing::read_file(precious), "precious\n");
  EXPECT_TRUE(fs::is_symlink(in_own_dir));
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(fs::file_size(theirs), 0u);
}

// The runtime dir is 0700: nobody may not list it, nor reach a mailbox or a
// registered name in it, even where its parent lets them through.
TEST(Hostile, AnotherUserCannotReachMailboxesOrReadTheRuntimeDir) {
  REQUIRE_ROOT();
  otpd_node n;
  start_stack(n);
  pid_t w = n.pid_of("stack");
  ASSERT_GT(w, 0);
  fs::permissions(n.dir(), fs::perms(0755));  // only the runtime dir's own mode stands in the way
  std::string mbox = layout::mailbox_socket(n.rt(), w);
  std::string name = layout::name_link(n.rt(), "stack");
  ASSERT_EQ(connect_errno(mbox), 0);  // reachable for the node's user
  EXPECT_EQ(as_nobody([&] {
              int code = 0;
              if (connect_errno(mbox) != EACCES) {
                code |= 1;
              }
              if (connect_errno(name) != EACCES) {
                code |= 2;
              }
              DIR* d = ::opendir(n.rt().c_str());
              if (d != nullptr || errno != EACCES) {
                code |= 4;
              }
              if (d != nullptr) {
                ::closedir(d);
              }
              struct stat st {};
              if (::stat(layout::mailbox_dir(n.rt()).c_str(), &st) == 0 || errno != EACCES) {
                code |= 8;
              }
              return code;
            }),
            0);
  std::string out;
  EXPECT_EQ(n.ctl(R"(call stack size)", &out), 0) << out;
  EXPECT_EQ(out, "[\"ok\",0]\n");
}

// ---- a flood of garbage into a worker's mailbox ---------------------------------

std::string header_bytes(const runtime::wire::header& h) {
  return {reinterpret_cast<const char*>(&h), sizeof h};
}

// Streams that are garbage or malformed in every way the decoder knows of,
// each sent on a connection of its own by the node's own user (the worst a
// buggy or hostile worker of the node can send).
std::vector<std::string> garbage_streams() {
  using runtime::kind;
  using runtime::wire::make_header;
  pid_t me = ::getpid();
  std::vector<std::string> out;
  std::mt19937 rng(12);  // fixed: the same bytes every run
  std::string noise(1 << 20, '\0');
  for (char& c : noise) {
    c = static_cast<char>(rng());
  }
  out.push_back(noise);
  auto frame = [&](runtime::wire::header h, const std::string& body) {
    return header_bytes(h) + body;
  };
  runtime::wire::header bad_magic = make_header(kind::call, me, {1, 1}, 4);
  bad_magic.magic = 0;
  out.push_back(frame(bad_magic, "abcd"));
  runtime::wire::header bad_version = make_header(kind::call, me, {1, 2}, 4);
  bad_version.version = 200;
  out.push_back(frame(bad_version, "abcd"));
  runtime::wire::header bad_kind = make_header(kind::call, me, {1, 3}, 4);
  bad_kind.kind = 250;
  out.push_back(frame(bad_kind, "abcd"));
  out.push_back(header_bytes(make_header(kind::call, me, {1, 4}, (64u << 20) + 1)));
  // Well-framed, bodies that are not msgpack, or lie about their size.
  out.push_back(frame(make_header(kind::call, me, {1, 5}, 1), "\xc1"));
  out.push_back(frame(make_header(kind::call, me, {1, 6}, 5), "\xdd\xff\xff\xff\xff"));
  out.push_back(frame(make_header(kind::call, me, {1, 7}, 5), "\xdf\xff\xff\xff\xff"));
  out.push_back(frame(make_header(kind::cast, me, {}, 3), "\x91\xc0\xc1"));
  // Valid msgpack, requests of the wrong shape.
  out.push_back(frame(make_header(kind::call, me, {1, 8}, 5), "\x91\xa4push"));  // ["push"]
  out.push_back(frame(make_header(kind::call, me, {1, 9}, 1), "\x90"));          // []
  out.push_back(frame(make_header(kind::cast, me, {}, 1), "\xc0"));              // nil
  out.push_back(frame(make_header(kind::call, me, {1, 10}, 4), "\xa3pip"));      // "pip"
  out.push_back(frame(make_header(kind::reply, me, {1, 11}, 1), "\x01"));        // nobody asked
  // A forged sender: dropped.
  out.push_back(frame(make_header(kind::cast, 1, {}, 8), "\x92\xa4push\x05"));
  // Cut short: a header promising more than ever comes.
  out.push_back(frame(make_header(kind::call, me, {1, 12}, 1000), "\x92\xa4push"));
  out.push_back(header_bytes(make_header(kind::call, me, {1, 13}, 10)).substr(0, 17));
  return out;
}

void send_all(int fd, const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      return;  // the worker closed a broken stream: expected
    }
    off += static_cast<std::size_t>(n);
  }
}

int open_fds(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// Garbage and malformed frames from a process of the node's user, on many
// connections, some held open half-written, while well-formed callers call:
// the worker answers every call, keeps its pid, and closes what it was sent.
TEST(Hostile, AWorkerFloodedWithGarbageKeepsServingWellFormedCallers) {
  otpd_node n;
  start_stack(n);
  pid_t w = n.pid_of("stack");
  ASSERT_GT(w, 0);
  std::string mbox = layout::mailbox_socket(n.rt(), w);
  std::string out;
  ASSERT_EQ(n.ctl(R"(cast stack '["push", 1]')", &out), 0) << out;
  // This process calls too, through the runtime: one caller throughout, so
  // the worker's fds can be compared (each new caller adds a cached
  // connection and a watch, bounded by design).
  testing::runtime_session caller(n.rt());
  ASSERT_TRUE(caller.ok()) << caller.error().message();
  using size_reply = std::tuple<std::string, std::size_t>;
  auto size = [] {
    auto r = runtime::call<size_reply>(runtime::address("stack"), std::string("size"),
                                       testing::scaled(std::chrono::milliseconds(10000)));
    return r ? std::get<1>(*r) : std::size_t{999};
  };
  ASSERT_EQ(size(), 1u);
  int fds_before = open_fds(w);

  // The garbage comes from a process of its own with no mailbox, as a
  // broken worker's would: the worker's error replies to its malformed
  // calls then fail at once. (A caller that has a mailbox and never reads
  // it is another matter: replies to it wait for room, see the report of
  // this suite in docs/SECURITY.md.)
  auto flooder = [&](bool forever) {
    pid_t pid = ::fork();
    if (pid == 0) {
      auto streams = garbage_streams();
      for (std::size_t i = 0; forever || i < streams.size(); ++i) {
        unique_fd fd = connect_to(mbox);
        if (fd) {
          send_all(fd.get(), streams[i % streams.size()]);
        }
      }
      ::_exit(0);
    }
    return pid;
  };
  // Each malformed stream once, on its own connection, and 100 connections
  // left open with half a header each, while the worker answers; when they
  // are closed, it holds no more fds than before.
  pid_t once = flooder(false);
  ASSERT_GT(once, 0);
  int st = 0;
  ASSERT_EQ(::waitpid(once, &st, 0), once);
  std::vector<unique_fd> held;
  for (int i = 0; i < 100; ++i) {
    unique_fd fd = connect_to(mbox);
    ASSERT_TRUE(fd);
    send_all(fd.get(), std::string(10, '\xb7'));
    held.push_back(std::move(fd));
  }
  EXPECT_EQ(size(), 1u);
  held.clear();
  EXPECT_TRUE(testing::wait_until([&] { return open_fds(w) <= fds_before; }))
      << open_fds(w) << " fds, " << fds_before << " before";

  // ...and a flood that goes on while otpctl calls.
  pid_t flood = flooder(true);
  ASSERT_GT(flood, 0);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(n.ctl(fmt::format(R"(cast stack '["push", {}]')", i + 2), &out), 0) << out;
    EXPECT_EQ(n.ctl("call stack size", &out), 0) << out;
    EXPECT_EQ(out, fmt::format("[\"ok\",{}]\n", i + 2));
  }
  ::kill(flood, SIGKILL);
  ASSERT_EQ(::waitpid(flood, &st, 0), flood);
  for (int i = 21; i >= 2; --i) {
    EXPECT_EQ(n.ctl(R"(call stack '["pop"]')", &out), 0) << out;
    EXPECT_EQ(out, fmt::format("[\"ok\",{}]\n", i));
  }
  EXPECT_EQ(n.ctl(R"(call stack '["pop"]')", &out), 0) << out;
  EXPECT_EQ(out, "[\"ok\",1]\n");  // the forged and malformed pushes never landed
  EXPECT_EQ(n.pid_of("stack"), w) << n.log();
}

}  // namespace
}  // namespace otpd::itest

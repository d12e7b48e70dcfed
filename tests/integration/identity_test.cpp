// Limits and identity per worker (docs/CONTAINMENT.md): a real otpd starts
// shell workers that report what they got (/proc/self/status and limits,
// umask, nice, oom_score_adj, environment, a bind to a low port) to a file
// the test reads. The tests that switch to `user: nobody` need root and
// report themselves as not run without it.
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// What a worker writes about itself: the lines of /proc/self/status and
// /proc/self/limits we look at, then "key=value" lines. The report is
// written to a temporary name and renamed, so a reader sees all or nothing.
std::string reporter(const std::string& file, const std::string& extra = "") {
  return fmt::format(
      "{{ grep -E '^(Uid|Gid|Groups|NoNewPrivs|CapInh|CapPrm|CapEff|CapAmb):' /proc/self/status; "
      "cat /proc/self/limits; echo umask=$(umask); "
      "echo nice=$(cut -d' ' -f19 /proc/self/stat); "
      "echo oom_score_adj=$(cat /proc/self/oom_score_adj); "
      "echo HOME=$HOME; echo USER=$USER; echo LOGNAME=$LOGNAME; echo SHELL=$SHELL; {1} }} "
      "> {0}.tmp && mv {0}.tmp {0}; exec sleep 100000",
      file, extra);
}

// A shell worker item for root_yaml: id runs reporter(file, extra); more
// keys (YAML lines at 6 spaces) after it.
std::string reporting_worker(const std::string& id, const std::string& file,
                             const std::string& keys, const std::string& extra = "") {
  // YAML single quotes: the command holds double quotes and '$'.
  std::string cmd = reporter(file, extra);
  std::string quoted;
  for (char c : cmd) {
    quoted += c == '\'' ? std::string("''") : std::string(1, c);
  }
  return fmt::format("    - id: {}\n      shell: true\n      command: '{}'\n{}", id, quoted, keys);
}

// The report of a worker, once it is there.
std::string report_of(const std::string& file) {
  std::string text;
  testing::wait_until([&] {
    text = testing::read_file(file);
    return !text.empty();
  });
  return text;
}

// The value after "key=" or "Key:" on its line ("" when missing).
std::string field(const std::string& report, const std::string& key) {
  std::istringstream in(report);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) {
      std::string v = line.substr(key.size());
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return {};
}

// "soft hard" of a /proc/self/limits line, e.g. limits(r, "Max open files").
std::string limits(const std::string& report, const std::string& name) {
  std::istringstream words(field(report, name));
  std::string soft, hard;
  words >> soft >> hard;
  return soft + " " + hard;
}

// A directory that nobody may write reports to.
class report_dir {
 public:
  report_dir() { EXPECT_EQ(::chmod(dir_.path().c_str(), 01777), 0); }
  [[nodiscard]] std::string file(const std::string& name) const { return dir_.path() + "/" + name; }

 private:
  testing::temp_dir dir_{"otpd-id"};
};

bool root() {
  return ::geteuid() == 0;
}

#define NEEDS_ROOT()                                                                         \
  do {                                                                                       \
    if (!root()) {                                                                           \
      GTEST_SKIP() << "needs root: the worker switches to user nobody; not run, not passed"; \
    }                                                                                        \
  } while (0)

// otpd raises its own soft RLIMIT_NOFILE to the hard limit; a worker gets
// the soft limit otpd started with, unless its rlimits say otherwise.
TEST(Identity, NofileDefaultIsWhatOtpdStartedWithAndConfiguredWins) {
  otpd_node n;
  report_dir d;
  n.set_launcher({"prlimit", "--nofile=777:4096", "--"});
  n.start(root_yaml(
      "one_for_one",
      reporting_worker("plain", d.file("plain"), "") +
          reporting_worker("set", d.file("set"), "      rlimits: {nofile: [100, 200]}\n") +
          reporting_worker("one", d.file("one"), "      rlimits: {nofile: 300}\n")));
  ASSERT_GT(n.wait_running("one"), 0) << n.log();
  // otpd itself did raise its limit: what it hands on is not its own.
  std::string own = testing::read_file(fmt::format("/proc/{}/limits", n.pid()));
  EXPECT_EQ(limits(own, "Max open files"), "4096 4096") << own;
  EXPECT_EQ(limits(report_of(d.file("plain")), "Max open files"), "777 4096");
  EXPECT_EQ(limits(report_of(d.file("set")), "Max open files"), "100 200");
  EXPECT_EQ(limits(report_of(d.file("one")), "Max open files"), "300 300");
}

TEST(Identity, RlimitsUmaskNiceAndOomScoreAdj) {
  otpd_node n;
  report_dir d;
  n.start(root_yaml(
      "one_for_one",
      reporting_worker("w", d.file("w"),
                       "      rlimits: {core: 0, stack: [4M, 8M], cpu: [3600, unlimited], "
                       "nproc: [500, 1000], msgqueue: 4096, sigpending: 100, locks: 64, "
                       "memlock: 1M, fsize: unlimited, data: unlimited, as: unlimited, "
                       "nice: 0, rtprio: 0}\n"
                       "      umask: \"0027\"\n      nice: 7\n      oom_score_adj: 345\n") +
          reporting_worker("plain", d.file("plain"), "")));
  ASSERT_GT(n.wait_running("plain"), 0) << n.log();
  std::string r = report_of(d.file("w"));
  EXPECT_EQ(limits(r, "Max core file size"), "0 0") << r;
  EXPECT_EQ(limits(r, "Max stack size"), "4194304 8388608") << r;
  EXPECT_EQ(limits(r, "Max cpu time"), "3600 unlimited") << r;
  EXPECT_EQ(limits(r, "Max processes"), "500 1000") << r;
  EXPECT_EQ(limits(r, "Max msgqueue size"), "4096 4096") << r;
  EXPECT_EQ(limits(r, "Max pending signals"), "100 100") << r;
  EXPECT_EQ(limits(r, "Max file locks"), "64 64") << r;
  EXPECT_EQ(limits(r, "Max locked memory"), "1048576 1048576") << r;
  EXPECT_EQ(limits(r, "Max nice priority"), "0 0") << r;
  EXPECT_EQ(limits(r, "Max realtime priority"), "0 0") << r;
  EXPECT_EQ(field(r, "umask="), "0027");
  EXPECT_EQ(field(r, "nice="), "7");
  EXPECT_EQ(field(r, "oom_score_adj="), "345");
  // A worker without them has otpd's.
  std::string p = report_of(d.file("plain"));
  std::string otpd_stat = testing::read_file(fmt::format("/proc/{}/stat", n.pid()));
  std::istringstream words(otpd_stat.substr(otpd_stat.rfind(')') + 2));
  std::string word;
  for (int i = 3; i <= 19 && words >> word; ++i) {
  }
  EXPECT_EQ(field(p, "nice="), word) << p;
  EXPECT_EQ(field(p, "oom_score_adj=") + "\n",
            testing::read_file(fmt::format("/proc/{}/oom_score_adj", n.pid())))
      << p;
  mode_t mine = ::umask(0);
  ::umask(mine);
  EXPECT_EQ(field(p, "umask="), fmt::format("{:04o}", mine));
}

// env_file: merged under env and over node.env; read again at each start,
// so a broken file makes a failed start that the log explains by line;
// otpd --check names its file and line.
TEST(Identity, EnvFileMergedUnderEnvAndReadAtEveryStart) {
  otpd_node n;
  report_dir d;
  std::string env_file = n.dir() + "/app.env";
  {
    std::ofstream f(env_file);
    f << "# settings of the app\n"
         "\n"
         "A=file\n"
         "export B='single # kept $HOME'\n"
         "C=\"dq \\\"x\\\" \\$y\"\n"
         "D=file\n"
         "  E = spaced  \n";
  }
  std::string yaml =
      "node:\n  env: {A: node, F: node}\n" +
      root_yaml("one_for_one",
                reporting_worker("w", d.file("w"),
                                 "      restart: temporary\n      env_file: app.env\n"
                                 "      env: {D: env}\n",
                                 "echo \"A=$A\"; echo \"B=$B\"; echo \"C=$C\"; echo \"D=$D\"; "
                                 "echo \"E=$E\"; echo \"F=$F\";"));
  n.start(yaml);
  pid_t w = n.wait_running("w");
  ASSERT_GT(w, 0) << n.log();
  std::string r = report_of(d.file("w"));
  EXPECT_EQ(field(r, "A="), "file") << r;
  EXPECT_EQ(field(r, "B="), "single # kept $HOME") << r;
  EXPECT_EQ(field(r, "C="), "dq \"x\" $y") << r;
  EXPECT_EQ(field(r, "D="), "env") << r;
  EXPECT_EQ(field(r, "E="), "spaced") << r;
  EXPECT_EQ(field(r, "F="), "node") << r;

  // An edit shows at the next start.
  {
    std::ofstream f(env_file);
    f << "A=edited\n";
  }
  ::unlink(d.file("w").c_str());
  ASSERT_EQ(n.ctl("restart w"), 0) << n.log();
  w = n.wait_running("w", w);
  ASSERT_GT(w, 0) << n.log();
  r = report_of(d.file("w"));
  EXPECT_EQ(field(r, "A="), "edited") << r;
  EXPECT_EQ(field(r, "B="), "") << r;

  // A malformed file: the start fails, the log names file and line.
  {
    std::ofstream f(env_file);
    f << "A=1\n# fine\nnot a line\n";
  }
  ASSERT_EQ(n.ctl("restart w"), 0);
  ASSERT_TRUE(n.wait_state("w", "failed")) << n.log();
  EXPECT_NE(n.log().find(env_file + ":3: expected KEY=VALUE"), std::string::npos) << n.log();
  // So does otpd --check, with the config's own file, line and key.
  int st = 0;
  std::string out = testing::sh_output(
      fmt::format("{} --check {} 2>&1", testing::shell_quote(testing::bin_path("otpd")),
                  testing::shell_quote(n.config_path())),
      &st);
  EXPECT_NE(st, 0) << out;
  EXPECT_NE(out.find(n.config_path() + ":"), std::string::npos) << out;
  EXPECT_NE(out.find(".env_file: " + env_file + ":3: expected KEY=VALUE"), std::string::npos)
      << out;
  // A missing one: the same, with the reason.
  ::unlink(env_file.c_str());
  ASSERT_EQ(n.ctl("start w"), 0);
  ASSERT_TRUE(testing::wait_until([&] {
    return n.log().find(env_file + ": unable to read the env_file: No such file or directory") !=
           std::string::npos;
  })) << n.log();
  EXPECT_EQ(n.state_of("w"), "failed");
  // Fixed: it starts again.
  {
    std::ofstream f(env_file);
    f << "A=back\n";
  }
  ::unlink(d.file("w").c_str());
  ASSERT_EQ(n.ctl("start w"), 0);
  ASSERT_GT(n.wait_running("w"), 0) << n.log();
  EXPECT_EQ(field(report_of(d.file("w")), "A="), "back");
}

// The groups getgrouplist(3) gives user with group gid, sorted.
std::set<gid_t> groups_of(const char* user, gid_t gid) {
  int count = 64;
  std::vector<gid_t> g(64);
  if (::getgrouplist(user, gid, g.data(), &count) < 0) {
    g.resize(static_cast<std::size_t>(count));
    ::getgrouplist(user, gid, g.data(), &count);
  }
  g.resize(static_cast<std::size_t>(count));
  return {g.begin(), g.end()};
}

std::set<gid_t> groups_in(const std::string& report) {
  std::istringstream in(field(report, "Groups:"));
  std::set<gid_t> out;
  for (gid_t g; in >> g;) {
    out.insert(g);
  }
  return out;
}

TEST(Identity, UserGetsItsGroupsAndLoginEnvironment) {
  NEEDS_ROOT();
  otpd_node n;
  report_dir d;
  n.start(root_yaml("one_for_one",
                    reporting_worker("nob", d.file("nob"), "      user: nobody\n") +
                        reporting_worker("home", d.file("home"),
                                         "      user: nobody\n      env: {HOME: /srv/app}\n")));
  ASSERT_GT(n.wait_running("home"), 0) << n.log();
  std::string r = report_of(d.file("nob"));
  struct passwd* pw = ::getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  EXPECT_EQ(field(r, "Uid:").substr(0, field(r, "Uid:").find_first_of(" \t")),
            std::to_string(pw->pw_uid))
      << r;
  std::set<gid_t> want = groups_of("nobody", pw->pw_gid);
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(groups_in(r), want) << r;
  EXPECT_EQ(field(r, "HOME="), pw->pw_dir) << r;
  EXPECT_EQ(field(r, "USER="), "nobody") << r;
  EXPECT_EQ(field(r, "LOGNAME="), "nobody") << r;
  EXPECT_EQ(field(r, "SHELL="), pw->pw_shell) << r;
  // env wins over the password database.
  std::string h = report_of(d.file("home"));
  EXPECT_EQ(field(h, "HOME="), "/srv/app") << h;
  EXPECT_EQ(field(h, "USER="), "nobody") << h;
}

// A loopback port below 1024 that nothing listens on now; 0 when none.
int free_low_port() {
  for (int port = 900; port < 1000; ++port) {
    core::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      return port;
    }
  }
  return 0;
}

// An ambient CAP_NET_BIND_SERVICE: nobody binds a low port; without it,
// nobody cannot. no_new_privileges shows in /proc/self/status.
TEST(Identity, AmbientCapabilityLetsNobodyBindALowPort) {
  NEEDS_ROOT();
  int port = free_low_port();
  ASSERT_GT(port, 0) << "no free loopback port in 900-999";
  otpd_node n;
  report_dir d;
  // perl is in every Debian (perl-base is essential), and world-executable.
  std::string bind = fmt::format(
      "perl -MSocket -e \"socket(my \\$s, PF_INET, SOCK_STREAM, 0) or die; "
      "setsockopt(\\$s, SOL_SOCKET, SO_REUSEADDR, 1); "
      "print bind(\\$s, pack_sockaddr_in({}, inet_aton(q(127.0.0.1)))) ? qq(bind=ok\\n) : "
      "qq(bind=\\$!\\n)\";",
      port);
  n.start(
      root_yaml("one_for_one",
                reporting_worker("cap", d.file("cap"),
                                 "      user: nobody\n      capabilities: [CAP_NET_BIND_SERVICE]\n"
                                 "      no_new_privileges: true\n",
                                 bind) +
                    reporting_worker("nocap", d.file("nocap"), "      user: nobody\n", bind)));
  ASSERT_GT(n.wait_running("nocap"), 0) << n.log();
  std::string c = report_of(d.file("cap"));
  // CAP_NET_BIND_SERVICE is bit 10: 0x400.
  EXPECT_EQ(field(c, "CapAmb:"), "0000000000000400") << c;
  EXPECT_EQ(field(c, "CapEff:"), "0000000000000400") << c;
  EXPECT_EQ(field(c, "NoNewPrivs:"), "1") << c;
  EXPECT_EQ(field(c, "bind="), "ok") << c;
  std::string nc = report_of(d.file("nocap"));
  EXPECT_EQ(field(nc, "CapAmb:"), "0000000000000000") << nc;
  EXPECT_EQ(field(nc, "NoNewPrivs:"), "0") << nc;
  EXPECT_EQ(field(nc, "bind="), "Permission denied") << nc;
}

// --check refuses what a start could not do, naming file, line and key.
TEST(Identity, CheckNamesFileLineAndKey) {
  otpd_node n;
  std::string cfg = n.dir() + "/bad.yaml";
  auto check = [&](const std::string& keys) {
    std::ofstream(cfg) << root_yaml("one_for_one", sleeper("w", keys));
    int st = 0;
    std::string out = testing::sh_output(
        fmt::format("{} --check {} 2>&1", testing::shell_quote(testing::bin_path("otpd")),
                    testing::shell_quote(cfg)),
        &st);
    EXPECT_NE(st, 0) << out;
    return out;
  };
  EXPECT_NE(
      check(", rlimits: {nofile: unlimited}").find("rlimits.nofile: nofile cannot be unlimited"),
      std::string::npos);
  EXPECT_NE(check(", umask: \"0999\"").find("umask: expected an octal mode"), std::string::npos);
  EXPECT_NE(check(", capabilities: [CAP_FLY]").find("capabilities[0]: unknown capability"),
            std::string::npos);
  EXPECT_NE(check(", nice: 20").find(cfg + ":"), std::string::npos);
}

}  // namespace
}  // namespace otpd::itest

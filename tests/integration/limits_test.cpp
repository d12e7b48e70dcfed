// Limits: a worker's `limits:` (memory, cpu, pids) enforced by the kernel
// through its cgroups, the OOM killer's reason, the figures of status, and
// the refusal of limits no controller can enforce. Real processes, real
// cgroups: the tests that need a controller report themselves as not run
// (with the reason) where `otpd --check` says none can enforce the limit
// here (no root, no cgroup hierarchy); CI runs as root and runs them all.
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// What `otpd --check` says of yaml (with extra arguments): "" when valid.
std::string check_output(otpd_node& n, const std::string& yaml, const std::string& extra,
                         int* code) {
  n.write_config(yaml);
  int st = 0;
  std::string out = testing::sh_output(
      fmt::format("{} --check {} {} 2>&1", testing::shell_quote(testing::bin_path("otpd")),
                  testing::shell_quote(n.config_path()), extra),
      &st);
  *code = WEXITSTATUS(st);
  return out;
}

#define SKIP_UNLESS_ENFORCEABLE(n, yaml)                                                          \
  do {                                                                                            \
    int code_ = 0;                                                                                \
    std::string out_ = check_output(n, yaml, "", &code_);                                         \
    ASSERT_TRUE(code_ == 0 || out_.find("no cgroup controller can enforce") != std::string::npos) \
        << "otpd --check refused the config for another reason:\n"                                \
        << out_;                                                                                  \
    if (code_ != 0) {                                                                             \
      GTEST_SKIP() << "no cgroup controller can enforce these limits here (needs root and "       \
                      "cgroups):\n"                                                               \
                   << out_;                                                                       \
    }                                                                                             \
  } while (0)

// The cgroup file of a process for a controller: the v1 hierarchy that has
// it (from /proc/PID/cgroup and mountinfo), else the v2 one.
std::string cgroup_file(pid_t pid, const std::string& controller, const std::string& v1_file,
                        const std::string& v2_file) {
  std::istringstream in(testing::read_file(fmt::format("/proc/{}/cgroup", pid)));
  std::string v2_path;
  for (std::string line; std::getline(in, line);) {
    auto c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    std::string ctl = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    if (ctl.empty()) {
      v2_path = path;
      continue;
    }
    std::istringstream cs(ctl);
    for (std::string c; std::getline(cs, c, ',');) {
      if (c != controller) {
        continue;
      }
      // Its mount: a cgroup mount whose options name the controller.
      std::istringstream mi(testing::read_file("/proc/self/mountinfo"));
      for (std::string m; std::getline(mi, m);) {
        auto dash = m.find(" - cgroup ");
        if (dash == std::string::npos) {
          continue;
        }
        std::istringstream f(m.substr(0, dash));
        std::string id, parent, dev, root, point;
        f >> id >> parent >> dev >> root >> point;
        std::string opts = m.substr(m.rfind(' ') + 1);
        if (("," + opts + ",").find("," + controller + ",") != std::string::npos) {
          std::string file = point + path + "/" + v1_file;
          if (std::filesystem::exists(file)) {
            return file;
          }
        }
      }
    }
  }
  for (const char* mount : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    std::string file = std::string(mount) + v2_path + "/" + v2_file;
    if (std::filesystem::exists(file)) {
      return file;
    }
  }
  return {};
}

TEST(Limits, MemoryLimitExceededEndsInOomKilledAndARestart) {
  otpd_node n;
  std::string c = otpd_node::child(), flag = n.dir() + "/oomed";
  // The first run allocates past its limit; the restart just sleeps.
  std::string yaml =
      root_yaml("one_for_one",
                fmt::format("    - id: hog\n      shell: true\n      limits: {{memory: 64M}}\n"
                            "      command: \"if [ -e {1} ]; then exec {0} sleep; fi; touch {1}; "
                            "exec {0} alloc 1024 sleep\"\n",
                            testing::shell_quote(c), flag),
                10, 60);
  SKIP_UNLESS_ENFORCEABLE(n, yaml);
  n.start(yaml, /*wait_ready=*/false);
  ASSERT_TRUE(testing::wait_until([&] { return std::filesystem::exists(flag); })) << n.log();
  ASSERT_TRUE(testing::wait_until([&] {
    json hog = otpd_node::find(n.status(), "hog");
    return !hog.is_null() && hog.value("restarts", 0) >= 1 && hog.value("state", "") == "running";
  })) << n.log();
  json hog = otpd_node::find(n.status(), "hog");
  EXPECT_EQ(hog.value("last_exit", ""), "oom_killed") << hog.dump();
  std::string log = n.log();
  EXPECT_NE(log.find("killed by the OOM killer"), std::string::npos) << log;
  EXPECT_NE(log.find("exited"), std::string::npos) << log;
  EXPECT_NE(log.find(": oom_killed"), std::string::npos) << log;
  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
}

TEST(Limits, PidsLimitMakesForkFailInsideTheChild) {
  otpd_node n;
  std::string report = n.dir() + "/forks";
  std::string yaml = root_yaml(
      "one_for_one", fmt::format("    - {{id: forker, limits: {{pids: 4}}, command: [{}, forks, "
                                 "20, {}, sleep]}}\n",
                                 otpd_node::child(), report));
  SKIP_UNLESS_ENFORCEABLE(n, yaml);
  n.start(yaml);
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(report).empty(); })) << n.log();
  int made = -1, err = -1;
  std::string text = testing::read_file(report);
  ASSERT_EQ(std::sscanf(text.c_str(), "forked %d errno %d", &made, &err), 2) << text;
  EXPECT_LE(made, 3) << text;  // the worker itself is one of the 4
  EXPECT_EQ(err, EAGAIN) << text;
  json st = n.status();
  json f = otpd_node::find(st, "forker");
  EXPECT_EQ(f.value("pids_current", 0u), static_cast<unsigned>(made + 1)) << f.dump();
  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
}

TEST(Limits, CpuAndMemoryLimitsAreWrittenToTheChildsCgroups) {
  otpd_node n;
  std::string yaml =
      root_yaml("one_for_one", sleeper("capped", ", limits: {cpu: 0.5, memory: 256M, pids: 100}"));
  SKIP_UNLESS_ENFORCEABLE(n, yaml);
  n.start(yaml);
  pid_t pid = n.wait_running("capped");
  ASSERT_GT(pid, 0) << n.log();
  std::string cpu = cgroup_file(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
  ASSERT_FALSE(cpu.empty()) << testing::read_file(fmt::format("/proc/{}/cgroup", pid));
  EXPECT_NE(cpu.find("/otpd-"), std::string::npos) << cpu;
  std::string quota = testing::read_file(cpu);
  EXPECT_TRUE(quota == "50000\n" || quota == "50000 100000\n") << cpu << ": " << quota;
  std::string mem = cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max");
  ASSERT_FALSE(mem.empty());
  EXPECT_EQ(testing::read_file(mem), "268435456\n") << mem;
  std::string pids = cgroup_file(pid, "pids", "pids.max", "pids.max");
  ASSERT_FALSE(pids.empty());
  EXPECT_EQ(testing::read_file(pids), "100\n") << pids;

  // A reload that drops the limits: the restarted worker runs without them.
  n.write_config(root_yaml("one_for_one", sleeper("capped")));
  ASSERT_EQ(n.ctl("reload"), 0) << n.log();
  pid_t again = n.wait_running("capped", pid);
  ASSERT_GT(again, 0) << n.log();
  std::string cpu2 = cgroup_file(again, "cpu", "cpu.cfs_quota_us", "cpu.max");
  std::string quota2 = cpu2.empty() ? "" : testing::read_file(cpu2);
  EXPECT_TRUE(quota2.empty() || quota2 == "-1\n" || quota2.rfind("max", 0) == 0)
      << cpu2 << ": " << quota2;

  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
  EXPECT_FALSE(std::filesystem::exists(cpu)) << cpu << " outlived its otpd";
  EXPECT_FALSE(std::filesystem::exists(mem)) << mem << " outlived its otpd";
}

// kill -9 of otpd: the worker dies (PDEATHSIG), its child lives on in the
// worker's cgroups until an otpd starts on the same runtime dir; then it is
// killed, and at that otpd's stop no cgroup of the worker is left (v1 ones
// included).
TEST(Limits, KillNineOfOtpdThenAStartCleansUpTheLimitedCgroups) {
  otpd_node n;
  std::string g = n.dir() + "/grandchild";
  std::string yaml = root_yaml(
      "one_for_one", fmt::format("    - {{id: lim, limits: {{pids: 50, memory: 128M}}, command: "
                                 "[{}, grandchild-setsid, {}, sleep]}}\n",
                                 otpd_node::child(), g));
  SKIP_UNLESS_ENFORCEABLE(n, yaml);
  n.start(yaml);
  pid_t w = n.wait_running("lim");
  ASSERT_GT(w, 0) << n.log();
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(g).empty(); }));
  pid_t gc = std::stoi(testing::read_file(g));
  std::string pids = cgroup_file(w, "pids", "pids.max", "pids.max");
  std::string mem = cgroup_file(w, "memory", "memory.limit_in_bytes", "memory.max");
  ASSERT_FALSE(pids.empty());
  ASSERT_FALSE(mem.empty());
  std::string pids_dir = fs::path(pids).parent_path(), mem_dir = fs::path(mem).parent_path();
  n.signal(SIGKILL);
  EXPECT_EQ(n.wait_exit(), 128 + SIGKILL);
  EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(w); }));
  ASSERT_TRUE(testing::process_alive(gc));
  EXPECT_TRUE(fs::exists(pids_dir));

  n.start(yaml);
  EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(gc); }))
      << "the grandchild " << gc << " survived the new otpd\n"
      << n.log();
  EXPECT_NE(n.log().find("killed what a previous otpd left in"), std::string::npos) << n.log();
  ASSERT_GT(n.wait_running("lim"), 0) << n.log();
  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
  EXPECT_FALSE(fs::exists(pids_dir)) << pids_dir << " outlived its otpd";
  EXPECT_FALSE(fs::exists(mem_dir)) << mem_dir << " outlived its otpd";
}

TEST(Limits, StatusCarriesTheFiguresOfAChildsCgroups) {
  otpd_node n;
  std::string pidfile = n.dir() + "/busy.pid";
  std::string yaml = root_yaml(
      "one_for_one",
      fmt::format("    - {{id: busy, limits: {{memory: 512M}}, command: [{}, alloc, 48, spin, "
                  "300, pidfile, {}, sleep]}}\n",
                  otpd_node::child(), pidfile));
  SKIP_UNLESS_ENFORCEABLE(n, yaml);
  n.start(yaml);
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(pidfile).empty(); })) << n.log();
  json b = otpd_node::find(n.status(), "busy");
  ASSERT_TRUE(b.contains("memory_current")) << b.dump();
  EXPECT_GE(b["memory_current"].get<std::uint64_t>(), 48u << 20) << b.dump();
  EXPECT_LT(b["memory_current"].get<std::uint64_t>(), 512u << 20) << b.dump();
  ASSERT_TRUE(b.contains("memory_peak")) << b.dump();
  EXPECT_GE(b["memory_peak"].get<std::uint64_t>(), b["memory_current"].get<std::uint64_t>());
  ASSERT_TRUE(b.contains("cpu_usec")) << b.dump();
  EXPECT_GE(b["cpu_usec"].get<std::uint64_t>(), 100000u) << b.dump();  // spun 300 ms
  ASSERT_TRUE(b.contains("pids_current")) << b.dump();
  EXPECT_EQ(b["pids_current"].get<std::uint64_t>(), 1u) << b.dump();
  // A supervisor has none.
  json root = n.status();
  EXPECT_FALSE(root.contains("cpu_usec"));
  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
}

TEST(Limits, CheckAndStartRefuseALimitNoControllerCanEnforce) {
  otpd_node n;
  std::string yaml = root_yaml("one_for_one", "    - id: a\n      command: [" + otpd_node::child() +
                                                  ", sleep]\n      limits:\n        memory: 1G\n");
  int code = 0;
  std::string out = check_output(n, yaml, "--containment pgroup", &code);
  EXPECT_EQ(code, 1) << out;
  std::string want = n.config_path() +
                     ":7:17: supervisor.children[0].limits.memory: no cgroup "
                     "controller can enforce it here";
  EXPECT_EQ(out.rfind(want, 0), 0u) << out;
  EXPECT_NE(out.find("--containment pgroup"), std::string::npos) << out;

  // The start refuses it the same way, and nothing runs.
  n.start(yaml, /*wait_ready=*/false, {"--containment", "pgroup"});
  EXPECT_EQ(n.wait_exit(), 1) << n.log();
  EXPECT_NE(n.log().find(want), std::string::npos) << n.log();
  EXPECT_FALSE(std::filesystem::exists(n.rt() + "/control.sock"));

  // A reload that brings such a limit is refused; the running tree stays.
  n.start(root_yaml("one_for_one", sleeper("a")), true, {"--containment", "pgroup"});
  pid_t a = n.wait_running("a");
  ASSERT_GT(a, 0) << n.log();
  n.write_config(yaml);
  std::string reply;
  EXPECT_EQ(n.ctl("reload", &reply), 1) << reply;
  EXPECT_NE(reply.find("limits.memory: no cgroup controller can enforce it here"),
            std::string::npos)
      << reply;
  EXPECT_EQ(n.pid_of("a"), a);
  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();

  // Bad values are the loader's errors, in any mode.
  for (const auto& [limits, expect] :
       {std::pair{"{memory: 12X}", "limits.memory: expected a positive size"},
        std::pair{"{memory: 1K}", "limits.memory: at least 1M"},
        std::pair{"{cpu: 0}", "limits.cpu: expected a number in [0.01, 4096]"},
        std::pair{"{pids: -1}", "limits.pids: expected an integer in [1, 4194304]"},
        std::pair{"{disk: 1G}", "limits.disk: unknown key"}}) {
    std::string bad = root_yaml("one_for_one", sleeper("a", std::string(", limits: ") + limits));
    out = check_output(n, bad, "", &code);
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find(expect), std::string::npos) << out;
  }
}

// stop_as_group in cgroup mode: after the worker's own process has exited,
// what is left in its cgroup gets the rest of the shutdown timeout (the
// worker stays "stopping"), then cgroup.kill; the worker is stopped once
// the cgroup is empty.
TEST(StopAsGroup, LeftoversGetTheRestOfTheShutdownTimeoutThenTheCgroupIsKilled) {
  otpd_node n;
  std::string c = otpd_node::child();
  std::string helper_pid = n.dir() + "/helper.pid", main_term = n.dir() + "/main.term";
  n.start(root_yaml("one_for_one",
                    fmt::format("    - id: w\n      shell: true\n      shutdown: {}\n"
                                "      stop_as_group: true\n"
                                "      command: \"{} ignore-term pidfile {} sleep & exec {} "
                                "on-term {} sleep\"\n",
                                testing::scaled(3000ms).count(), testing::shell_quote(c),
                                helper_pid, testing::shell_quote(c), main_term)));
  if (n.status().value("containment", "") != "cgroup") {
    EXPECT_FALSE(testing::cgroup_mode_expected())
        << "root with a cgroup v2 hierarchy mounted, yet otpd chose another containment:\n"
        << n.log();
    GTEST_SKIP() << "needs the cgroup containment (root and a cgroup v2 hierarchy)\n" << n.log();
  }
  pid_t w = n.wait_running("w");
  ASSERT_GT(w, 0) << n.log();
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(helper_pid).empty(); }));
  pid_t helper = std::stoi(testing::read_file(helper_pid));
  ASSERT_EQ(n.ctl("stop w"), 0);
  // The main process went at once; the helper ignores SIGTERM and is still
  // there, and so the worker is still stopping.
  ASSERT_TRUE(testing::wait_until([&] { return testing::read_file(main_term) == "term\n"; }));
  ASSERT_TRUE(testing::wait_until([&] { return !testing::process_alive(w); }));
  EXPECT_TRUE(testing::process_alive(helper));
  EXPECT_EQ(n.state_of("w"), "stopping");
  // Then the timeout: the helper is killed, the worker stopped, by shutdown.
  ASSERT_TRUE(n.wait_state("w", "stopped")) << n.log();
  EXPECT_FALSE(testing::process_alive(helper));
  EXPECT_NE(n.log().find("still holds processes after the shutdown timeout"), std::string::npos)
      << n.log();
  json st = otpd_node::find(n.status(), "w");
  EXPECT_EQ(st.value("last_exit", ""), "shutdown") << st.dump();
  ASSERT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0) << n.log();
}

}  // namespace
}  // namespace otpd::itest

// otpctl, the control socket, the registry clean-up, output capture, and
// configs that otpd must refuse.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/supervisor/control_client.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;

// A root one_for_one supervisor with otpd's default intensity.
std::string one(const std::string& children) {
  return root_yaml("one_for_one", children);
}

TEST(Control, InvalidConfigsAreRejectedWithFileAndLine) {
  testing::temp_dir d;
  std::string child = testing::bin_path("otpd_test_child");
  std::string noexec = d.path() + "/noexec.sh";
  std::ofstream(noexec) << "#!/bin/sh\n";
  struct bad {
    std::string yaml;
    std::string expect;  // after "FILE:"
  };
  const std::vector<bad> cases = {
      {"supervisor:\n  strategy: one_for_none\n", "2:13: supervisor.strategy: expected one of"},
      {"supervisor:\n  strategy: one_for_one\n  max_restarts: -1\n",
       "3:17: supervisor.max_restarts: expected an integer in [0, 1000000]"},
      {"supervisor:\n  strategy: one_for_one\n  max_seconds: soon\n",
       "3:16: supervisor.max_seconds: expected an integer"},
      {"supervisor:\n  strategy: one_for_one\n  bogus: 1\n", "3:3: supervisor.bogus: unknown key"},
      {"nodes: {}\n", "1:1: nodes: unknown key"},
      {one("    - {id: a, command: [" + child + "]}\n    - {id: a, command: [" + child + "]}\n"),
       "5:12: supervisor.children[1].id: duplicate id 'a'"},
      {one("    - {id: a}\n"), "4:7: supervisor.children[0].command: missing"},
      {one("    - {id: a, command: [/no/such/prog]}\n"),
       "4:24: supervisor.children[0].command: command not found: /no/such/prog"},
      {one("    - {id: a, command: [" + noexec + "]}\n"),
       "4:24: supervisor.children[0].command: command is not executable"},
      {one("    - {id: a, command: [" + child + "], restart: always}\n"),
       "supervisor.children[0].restart: expected one of permanent, transient, or temporary"},
      {one("    - {id: a, command: [" + child + "], readiness: {grpc: x}}\n"),
       "supervisor.children[0].readiness.grpc: unknown key"},
      {one("    - {id: a, command: [" + child + "], stdout: {keep: 2}}\n"),
       "supervisor.children[0].stdout.file: missing"},
      {one("    - {id: a, command: [" + child + "], shutdown: -5}\n"),
       "supervisor.children[0].shutdown: expected milliseconds, brutal_kill or infinity"},
      {"supervisor:\n  strategy: simple_one_for_one\n  children: []\n",
       "3:13: supervisor.children: a simple_one_for_one supervisor has a template, not children"},
      {"supervisor: [\n", "x"},
  };
  const std::string otpd = testing::shell_quote(testing::bin_path("otpd"));
  int i = 0;
  for (const auto& c : cases) {
    std::string file = fmt::format("{}/bad{}.yaml", d.path(), i++);
    std::ofstream(file) << c.yaml;
    int st = 0;
    std::string out = testing::sh_output(fmt::format("{} --check {} 2>&1", otpd, file), &st);
    EXPECT_EQ(WEXITSTATUS(st), 1) << c.yaml;
    EXPECT_EQ(out.rfind(file + ":", 0), 0u) << out;
    if (c.expect != "x") {
      EXPECT_NE(out.find(c.expect), std::string::npos) << "got: " << out << "want: " << c.expect;
    }
  }
  // Nothing starts with an invalid config.
  std::string file = d.path() + "/bad0.yaml";
  int st = 0;
  std::string out =
      testing::sh_output(fmt::format("{} {} --runtime-dir {}/rt 2>&1", otpd, file, d.path()), &st);
  EXPECT_EQ(WEXITSTATUS(st), 1);
  EXPECT_FALSE(std::filesystem::exists(d.path() + "/rt/control.sock"));
}

TEST(Control, OtpctlExitCodes) {
  testing::temp_dir d;
  std::string ctl = testing::shell_quote(testing::bin_path("otpctl"));
  int st = 0;
  std::string out =
      testing::sh_output(fmt::format("{} --runtime-dir {} status 2>&1", ctl, d.path()), &st);
  EXPECT_EQ(WEXITSTATUS(st), 111);
  EXPECT_NE(out.find("is otpd running"), std::string::npos) << out;
  out = testing::sh_output(fmt::format("{} --runtime-dir {} frobnicate 2>&1", ctl, d.path()), &st);
  EXPECT_EQ(WEXITSTATUS(st), 100) << out;

  otpd_node n;
  n.start(one(sleeper("a")));
  n.wait_running("a");
  EXPECT_EQ(n.ctl("stop nope", &out), 1);
  EXPECT_EQ(out, "otpctl: no such child: nope\n");
  EXPECT_EQ(n.ctl("start a", &out), 1);
  EXPECT_EQ(out, "otpctl: a is already running\n");
  EXPECT_EQ(n.ctl("stop a"), 0);
  ASSERT_TRUE(n.wait_state("a", "stopped"));
  EXPECT_EQ(n.ctl("start a"), 0);
  pid_t a = n.wait_running("a");
  EXPECT_EQ(n.ctl("restart a"), 0);
  EXPECT_GT(n.wait_running("a", a), 0);
  EXPECT_EQ(n.ctl("status", &out), 0);
  EXPECT_NE(out.find("a "), std::string::npos);
  EXPECT_EQ(n.ctl("shutdown"), 0);
  EXPECT_EQ(n.wait_exit(), 0);
}

TEST(Control, MonitorReceivesDownWithTheReasonAndExitsAreRemembered) {
  otpd_node n;
  n.start(one(sleeper("a", ", name: alpha")));
  pid_t a = n.wait_running("a");
  // The runtime would register these; otpd must remove them after a SIGKILL.
  std::string mbox = fmt::format("{}/mbox/{}", n.rt(), a);
  std::ofstream(mbox) << "";
  std::string name = n.rt() + "/names/alpha";
  ASSERT_EQ(::symlink(fmt::format("../mbox/{}", a).c_str(), name.c_str()), 0);

  supervisor::control_client by_pid, by_name;
  ASSERT_TRUE(by_pid.connect(n.rt()).has_value());
  ASSERT_TRUE(by_name.connect(n.rt()).has_value());
  auto r1 = by_pid.request(fmt::format(R"({{"cmd":"monitor","pid":{}}})", a));
  auto r2 = by_name.request(R"({"cmd":"monitor","name":"alpha"})");
  ASSERT_TRUE(r1.has_value() && r2.has_value());
  EXPECT_EQ(json::parse(*r2)["pid"], a);
  shell_kill(a);
  for (auto* c : {&by_pid, &by_name}) {
    auto down = c->read_line();
    ASSERT_TRUE(down.has_value());
    json j = json::parse(*down);
    EXPECT_EQ(j["event"], "down");
    EXPECT_EQ(j["pid"], a);
    EXPECT_EQ(j["reason"], "killed");
    EXPECT_EQ(j["reason_kind"], 4);
    EXPECT_EQ(j["reason_value"], 9);
  }
  EXPECT_FALSE(std::filesystem::exists(mbox));
  EXPECT_FALSE(std::filesystem::is_symlink(name));
  supervisor::control_client q;
  ASSERT_TRUE(q.connect(n.rt()).has_value());
  json e = json::parse(*q.request(fmt::format(R"({{"cmd":"exit-reason","pid":{}}})", a)));
  EXPECT_EQ(e["found"], true);
  EXPECT_EQ(e["reason"], "killed");
  e = json::parse(*q.request(R"({"cmd":"exit-reason","pid":1})"));
  EXPECT_EQ(e["found"], false);
  // A process that is gone: DOWN noproc at once.
  EXPECT_TRUE(q.send_line(fmt::format(R"({{"cmd":"monitor","pid":{}}})", a)).has_value());
  EXPECT_EQ(json::parse(*q.read_line())["ok"], true);
  EXPECT_EQ(json::parse(*q.read_line())["reason"], "noproc");
  n.wait_running("a", a);
}

TEST(Control, ChildrenGetTheirEnvironment) {
  otpd_node n;
  std::string out = n.dir() + "/env";
  n.start(fmt::format(
      "node:\n  name: envnode\n  env: {{G: global, X: from-node}}\n"
      "supervisor:\n  strategy: one_for_one\n  children:\n"
      "    - id: sub\n      strategy: one_for_one\n      children:\n"
      "        - id: e\n          name: reg\n          shell: true\n          env: {{X: mine}}\n"
      "          command: 'env > {}.tmp; mv {}.tmp {}; exec sleep 1000'\n",
      out, out, out));
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(out).empty(); }));
  std::string env = testing::read_file(out);
  for (const std::string& kv :
       std::vector<std::string>{"G=global", "X=mine", "OTPD_NODE=envnode", "OTPD_CHILD=sub/e",
                                "OTPD_NAME=reg", "OTPD_RUNTIME_DIR=" + n.rt()}) {
    EXPECT_NE(env.find(kv + "\n"), std::string::npos) << kv << " missing in\n" << env;
  }
  EXPECT_EQ(env.find("OTPD_READY_FD"), std::string::npos);
}

TEST(Control, ControlSocketIsPrivateAndChildrenRunAsTheirUser) {
  otpd_node n;
  bool root = ::geteuid() == 0;
  // As root the child runs as nobody, who may not reach build/bin.
  std::optional<testing::world_exec_copy> child;
  if (root) {
    child.emplace("otpd_test_child");
  }
  n.start(
      one(fmt::format("    - {{id: a, command: [{}, sleep]{}}}\n",
                      root ? child->path() : otpd_node::child(), root ? ", user: nobody" : "")));
  pid_t a = n.wait_running("a");
  struct stat st {};
  ASSERT_EQ(::stat((n.rt() + "/control.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(n.rt().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  if (root) {
    // otpd runs as root here: the child must have dropped to nobody.
    std::string status = testing::read_file(fmt::format("/proc/{}/status", a));
    auto uid = status.find("Uid:");
    ASSERT_NE(uid, std::string::npos);
    EXPECT_EQ(std::stoi(status.substr(uid + 4)), 65534) << status.substr(uid, 40);
  }
  // No fd of otpd leaks into a child: only 0, 1, 2 (and nothing else).
  std::vector<std::string> fds;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", a))) {
    fds.push_back(e.path().filename().string());
  }
  std::sort(fds.begin(), fds.end());
  EXPECT_EQ(fds, (std::vector<std::string>{"0", "1", "2"}));
}

TEST(Control, OutputIsCapturedAndRotatedBySize) {
  otpd_node n;
  std::string log = n.dir() + "/logs/spam.log";
  n.start(one(
      fmt::format("    - id: s\n      command: [{}, spam, '100', eprint, done, sleep]\n"
                  "      stdout: {{file: {}, max_size: 4K, keep: 2}}\n      stderr: {{file: {}}}\n",
                  otpd_node::child(), log, log)));
  n.wait_running("s");
  // 100 lines of 100 bytes through 4 KiB files: the current one and two old ones.
  ASSERT_TRUE(testing::wait_until(
      [&] { return testing::read_file(log).find("done\n") != std::string::npos; }));
  EXPECT_TRUE(std::filesystem::exists(log + ".1"));
  EXPECT_TRUE(std::filesystem::exists(log + ".2"));
  EXPECT_FALSE(std::filesystem::exists(log + ".3"));
  EXPECT_LE(std::filesystem::file_size(log + ".1"), 4096u);
  // An external logrotate moves the file away; reopen-logs starts a new one.
  std::filesystem::rename(log, log + ".moved");
  EXPECT_EQ(n.ctl("reopen-logs"), 0);
  EXPECT_TRUE(std::filesystem::exists(log));
}

TEST(Control, SimpleOneForOneStartsAndTerminatesChildren) {
  otpd_node n;
  std::string out = n.dir() + "/job";
  n.start(
      fmt::format("supervisor:\n  strategy: one_for_one\n  children:\n"
                  "    - id: jobs\n      strategy: simple_one_for_one\n      template:\n"
                  "        id: job\n        restart: transient\n        command: [{}, pidfile]\n",
                  otpd_node::child()));
  std::string path;
  EXPECT_EQ(n.ctl(fmt::format("start-child jobs {}-1 sleep", out), &path), 0) << path;
  EXPECT_EQ(path, "jobs/job-1\n");
  EXPECT_EQ(n.ctl(fmt::format("start-child jobs {}-2 sleep", out)), 0);
  pid_t j1 = n.wait_running("jobs/job-1");
  pid_t j2 = n.wait_running("jobs/job-2");
  ASSERT_TRUE(testing::wait_until([&] { return !testing::read_file(out + "-2").empty(); }));
  EXPECT_EQ(std::stoi(testing::read_file(out + "-2")), j2);
  shell_kill(j1);
  EXPECT_GT(n.wait_running("jobs/job-1", j1), 0);  // transient, killed: restarted
  EXPECT_EQ(n.ctl("terminate-child jobs job-2"), 0);
  ASSERT_TRUE(n.wait_state("jobs/job-2", "absent"));
  EXPECT_FALSE(testing::process_alive(j2));
  EXPECT_EQ(n.ctl("start-child nosuch"), 1);
}

TEST(Control, EventStreamFollowsLifecycle) {
  otpd_node n;
  n.start(one(sleeper("a")));
  pid_t a = n.wait_running("a");
  supervisor::control_client ev;
  ASSERT_TRUE(ev.connect(n.rt()).has_value());
  auto ans = ev.request(R"({"cmd":"events"})");
  ASSERT_TRUE(ans.has_value());
  EXPECT_FALSE(json::parse(*ans)["recent"].empty());
  shell_kill(a);
  std::vector<std::string> seen;
  while (seen.size() < 4) {
    auto line = ev.read_line();
    ASSERT_TRUE(line.has_value());
    json j = json::parse(*line);
    seen.push_back(j["event"].get<std::string>() + " " + j["path"].get<std::string>());
    if (seen.size() == 1) {
      EXPECT_EQ(j["pid"], a);
      EXPECT_EQ(j["reason"], "killed");
    }
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"exited a", "restarting a", "started a", "ready a"}));
}

TEST(Control, TcpReadinessWaitsForTheListener) {
  otpd_node n;
  int port = testing::free_port();
  ASSERT_GT(port, 0);
  // redis-server (a package the tests already need) opens its port 200 ms
  // after the start: the next child must wait for it.
  auto t0 = std::chrono::steady_clock::now();
  n.start(one(fmt::format(
      "    - id: srv\n      readiness: {{tcp: '127.0.0.1:{0}'}}\n      start_timeout: 5000\n"
      "      shell: true\n      stdout: null\n"
      "      command: 'sleep 0.2; exec redis-server --port {0} --save \"\" --appendonly no'\n"
      "    - {{id: after, command: [{1}, sleep]}}\n",
      port, otpd_node::child())));
  ASSERT_GT(n.wait_running("after"), 0) << n.log();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  std::string log = n.log();
  EXPECT_LT(log.find("srv ready"), log.find("after started"));
}

}  // namespace
}  // namespace otpd::itest

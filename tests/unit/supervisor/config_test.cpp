// Config validation: every error names file:line:column and the key path.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <otpd/supervisor/config.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::supervisor {
namespace {

std::string error_of(const std::string& yaml) {
  auto r = parse_config(yaml, "x.yaml");
  EXPECT_FALSE(r.has_value()) << "accepted:\n" << yaml;
  return r.message();
}

const std::string head = "supervisor:\n  strategy: one_for_one\n  children:\n";

TEST(Config, ParsesAFullTree) {
  auto r = parse_config(
      "node:\n  name: n1\n  env: {A: '1'}\n" + head +
          "    - id: w\n      name: stack\n      command: [/bin/sleep, '1']\n"
          "      env: {B: '2'}\n      restart: transient\n      shutdown: brutal_kill\n"
          "      readiness: {tcp: '127.0.0.1:7000'}\n      start_timeout: 300\n"
          "      stdout: {file: logs/w.log, max_size: 1M, keep: 3}\n      stderr: null\n"
          "      backoff: {initial: 10, max: 100}\n"
          "    - id: s\n      strategy: rest_for_one\n      max_restarts: 0\n      children:\n"
          "        - {id: x, command: 'sleep 1', shell: true, signal: INT, shutdown: 200}\n",
      "/tmp/c.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const config& c = **r;
  EXPECT_EQ(c.node.name, "n1");
  ASSERT_EQ(c.root.sup.children.size(), 2u);
  const child_spec& w = c.root.sup.children[0];
  EXPECT_EQ(w.name, "stack");
  EXPECT_EQ(w.restart, restart_type::transient);
  EXPECT_EQ(w.worker.shutdown.kind, shutdown_kind::brutal_kill);
  EXPECT_EQ(w.worker.readiness.kind, readiness_kind::tcp);
  EXPECT_EQ(w.worker.readiness.port, 7000);
  EXPECT_EQ(w.worker.readiness.start_timeout_ms, 300);
  EXPECT_EQ(w.worker.stdout_spec.path, "/tmp/logs/w.log");
  EXPECT_EQ(w.worker.stdout_spec.max_bytes, 1u << 20);
  EXPECT_EQ(w.worker.stderr_spec.kind, output_kind::null);
  EXPECT_TRUE(w.worker.backoff.enabled);
  const child_spec& s = c.root.sup.children[1];
  EXPECT_TRUE(s.is_supervisor);
  EXPECT_EQ(s.sup.strat, strategy::rest_for_one);
  EXPECT_EQ(s.sup.max_restarts, 0);
  const child_spec& x = s.sup.children[0];
  EXPECT_EQ(x.worker.argv, (std::vector<std::string>{"/bin/sh", "-c", "sleep 1"}));
  EXPECT_EQ(x.worker.shutdown.signal, SIGINT);
  EXPECT_EQ(x.worker.shutdown.timeout_ms, 200);
}

TEST(Config, RejectsBadRestartWithLineColumnAndKey) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true]}\n"
                            "    - id: b\n      command: [/bin/true]\n      restart: sometimes\n"),
            "x.yaml:7:16: supervisor.children[1].restart: expected one of permanent, transient, "
            "or temporary");
}

TEST(Config, RejectsUnknownKey) {
  EXPECT_EQ(error_of(head + "    - id: a\n      command: [/bin/true]\n      restrat: permanent\n"),
            "x.yaml:6:7: supervisor.children[0].restrat: unknown key (expected one of backoff, "
            "command, cwd, env, group, id, name, readiness, restart, shell, shutdown, signal, "
            "start_timeout, stderr, stdout, stop_as_group, success_exit_codes, user)");
}

TEST(Config, SuccessExitCodesAndStopAsGroup) {
  auto r = parse_config(head +
                            "    - {id: a, command: [/bin/true], restart: transient,\n"
                            "       success_exit_codes: [0, 3], stop_as_group: true}\n"
                            "    - {id: b, command: [/bin/true]}\n",
                        "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const auto& a = (*r)->root.sup.children[0].worker;
  EXPECT_EQ(a.success_exit_codes, (std::vector<int>{0, 3}));
  EXPECT_TRUE(a.stop_as_group);
  const auto& b = (*r)->root.sup.children[1].worker;
  EXPECT_EQ(b.success_exit_codes, (std::vector<int>{0}));
  EXPECT_FALSE(b.stop_as_group);
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], success_exit_codes: [0, 256]}\n"),
            "x.yaml:4:61: supervisor.children[0].success_exit_codes[1]: expected an integer in "
            "[0, 255], got 256");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], success_exit_codes: 3}\n"),
            "x.yaml:4:57: supervisor.children[0].success_exit_codes: expected a list of exit "
            "codes, e.g. [0, 3]");
}

TEST(Config, RejectsDuplicateIds) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true]}\n"
                            "    - {id: a, command: [/bin/true]}\n"),
            "x.yaml:5:12: supervisor.children[1].id: duplicate id 'a'");
}

TEST(Config, RejectsBadStrategy) {
  EXPECT_EQ(error_of("supervisor:\n  strategy: all_for_one\n"),
            "x.yaml:2:13: supervisor.strategy: expected one of one_for_one, one_for_all, "
            "rest_for_one, or simple_one_for_one");
}

TEST(Config, RejectsWrongTypes) {
  EXPECT_EQ(error_of("supervisor:\n  strategy: one_for_one\n  max_restarts: lots\n"),
            "x.yaml:3:17: supervisor.max_restarts: expected an integer, got 'lots'");
  EXPECT_EQ(error_of(head + "    - {id: a, command: {x: 1}}\n"),
            "x.yaml:4:24: supervisor.children[0].command: expected a list of arguments");
  EXPECT_EQ(error_of("supervisor:\n  strategy: one_for_one\n  children: {a: 1}\n"),
            "x.yaml:3:13: supervisor.children: expected a list of children");
}

TEST(Config, RejectsMissingCommand) {
  EXPECT_EQ(error_of(head + "    - {id: a}\n"),
            "x.yaml:4:7: supervisor.children[0].command: missing");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/nonexistent/prog]}\n"),
            "x.yaml:4:24: supervisor.children[0].command: command not found: /nonexistent/prog");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [no-such-program-xyz]}\n"),
            "x.yaml:4:24: supervisor.children[0].command: command not found in node.path, "
            "otpd's directory or PATH: no-such-program-xyz");
}

// A bare command name means the same whoever loads the config: node.path
// first (relative to the config's directory), then the directory of the
// loading binary, then PATH; argv[0] stays as written.
TEST(Config, ResolvesBareCommandsFromNodePathThenOwnDirectoryThenPath) {
  testing::temp_dir d;
  std::filesystem::create_directories(d.path() + "/tools");
  std::string tool = d.path() + "/tools/sleep";  // shadows PATH's sleep
  std::ofstream(tool) << "#!/bin/sh\n";
  std::filesystem::permissions(tool, std::filesystem::perms::owner_all);
  auto r =
      parse_config("node:\n  path: [tools]\n" + head + "    - {id: a, command: [sleep, '1']}\n",
                   d.path() + "/c.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const worker_spec& w = (*r)->root.sup.children[0].worker;
  EXPECT_EQ(w.program, tool);
  EXPECT_EQ(w.program_found_in, "node.path");
  EXPECT_EQ(w.argv[0], "sleep");

  // The test binary sits beside otpd_test_child: found there with any PATH.
  std::string self = testing::bin_dir();
  auto r2 = parse_config(head + "    - {id: a, command: [otpd_test_child]}\n", "c.yaml");
  ASSERT_TRUE(r2.has_value()) << r2.message();
  EXPECT_EQ((*r2)->root.sup.children[0].worker.program_found_in, "otpd's directory");
  EXPECT_EQ(std::filesystem::path((*r2)->root.sup.children[0].worker.program).parent_path(),
            std::filesystem::canonical(std::filesystem::path(self)));

  auto r3 = parse_config(head + "    - {id: a, command: [sh]}\n", "c.yaml");
  ASSERT_TRUE(r3.has_value()) << r3.message();
  EXPECT_EQ((*r3)->root.sup.children[0].worker.program_found_in, "PATH");

  EXPECT_EQ(error_of("node:\n  path: {a: b}\n" + head + "    - {id: a, command: [sh]}\n"),
            "x.yaml:2:9: node.path: expected a list of directories");
}

TEST(Config, RejectsNonExecutableCommand) {
  testing::temp_dir d;
  std::string f = d.path() + "/script";
  std::ofstream(f) << "#!/bin/sh\n";
  std::string e = error_of(head + "    - {id: a, command: [" + f + "]}\n");
  EXPECT_EQ(e, "x.yaml:4:24: supervisor.children[0].command: command is not executable: " + f);
}

TEST(Config, RejectsShellStringWithoutShell) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: 'sleep 1'}\n"),
            "x.yaml:4:24: supervisor.children[0].command: a command string needs 'shell: true'; "
            "otherwise give a list such as [prog, arg]");
}

TEST(Config, RejectsBadShutdownSignalAndReadiness) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], shutdown: soon}\n"),
            "x.yaml:4:47: supervisor.children[0].shutdown: expected milliseconds, brutal_kill or "
            "infinity");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], signal: SIGNOPE}\n"),
            "x.yaml:4:45: supervisor.children[0].signal: unknown signal 'SIGNOPE'");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {tcp: nowhere}}\n"),
            "x.yaml:4:54: supervisor.children[0].readiness.tcp: expected HOST:PORT, e.g. "
            "127.0.0.1:6379");
}

TEST(Config, RejectsSimpleOneForOneWithoutTemplate) {
  EXPECT_EQ(error_of("supervisor:\n  strategy: simple_one_for_one\n"),
            "x.yaml:2:3: supervisor.template: missing (simple_one_for_one needs a child template)");
}

TEST(Config, RejectsNestedErrorsWithTheirPath) {
  EXPECT_EQ(error_of(head + "    - id: s\n      strategy: one_for_all\n      children:\n"
                            "        - {id: w, command: [/bin/true], restart: never}\n"),
            "x.yaml:7:50: supervisor.children[0].children[0].restart: expected one of permanent, "
            "transient, or temporary");
}

TEST(Config, RejectsYamlSyntaxErrors) {
  std::string e = error_of("supervisor:\n  strategy: [one_for_one\n");
  EXPECT_EQ(e.rfind("x.yaml:", 0), 0u) << e;
}

TEST(Config, RejectsMissingFile) {
  auto r = load_config("/nonexistent/otpd.yaml");
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(r.message(),
            "/nonexistent/otpd.yaml: unable to read the config: No such file or directory");
}

}  // namespace
}  // namespace otpd::supervisor

// Config validation: every error names file:line:column and the key path.
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
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

TEST(Config, OutputsInheritPrefixedAndTimestamps) {
  auto r = parse_config(head +
                            "    - id: a\n      command: [/bin/true]\n"
                            "      stdout: inherit_prefixed\n"
                            "      stderr: {file: /tmp/a.err, timestamps: false}\n"
                            "    - id: b\n      command: [/bin/true]\n"
                            "      stdout: {to: inherit_prefixed, timestamps: true}\n"
                            "      stderr: /tmp/b.err\n",
                        "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const auto& a = (*r)->root.sup.children[0].worker;
  EXPECT_EQ(a.stdout_spec.kind, output_kind::inherit_prefixed);
  EXPECT_FALSE(a.stdout_spec.timestamps);
  EXPECT_EQ(a.stderr_spec.kind, output_kind::file);
  EXPECT_FALSE(a.stderr_spec.timestamps);
  const auto& b = (*r)->root.sup.children[1].worker;
  EXPECT_EQ(b.stdout_spec.kind, output_kind::inherit_prefixed);
  EXPECT_TRUE(b.stdout_spec.timestamps);
  EXPECT_TRUE(b.stderr_spec.timestamps);

  EXPECT_EQ(error_of(head + "    - id: a\n      command: [/bin/true]\n"
                            "      stdout: {file: /tmp/x, to: null}\n"),
            "x.yaml:6:34: supervisor.children[0].stdout.to: give either file or to, not both");
  EXPECT_EQ(error_of(head + "    - id: a\n      command: [/bin/true]\n"
                            "      stdout: {to: journal}\n"),
            "x.yaml:6:20: supervisor.children[0].stdout.to: expected inherit, null, "
            "inherit_prefixed, journald or syslog, got journal");
  EXPECT_EQ(error_of(head + "    - id: a\n      command: [/bin/true]\n"
                            "      stdout: {to: null, keep: 3}\n"),
            "x.yaml:6:32: supervisor.children[0].stdout.keep: only for a file output (file: PATH)");
  EXPECT_EQ(
      error_of(head + "    - id: a\n      command: [/bin/true]\n"
                      "      stdout: {file: /tmp/x, timestamps: maybe}\n"),
      "x.yaml:6:42: supervisor.children[0].stdout.timestamps: expected true or false, got 'maybe'");
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

// ---- bounds: a config is read by a root daemon -------------------------------

// Billion laughs: nine levels of ten aliases each is 10^9 nodes to a walk,
// from a few hundred bytes. Refused by the node budget, quickly, with the file.
std::string alias_bomb() {
  std::string s = "x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n";
  for (int i = 1; i < 9; ++i) {
    std::string prev = "*x" + std::to_string(i - 1);
    s += fmt::format("x{0}: &x{0} [{1}, {1}, {1}, {1}, {1}, {1}, {1}, {1}, {1}, {1}]\n", i, prev);
  }
  return s + "supervisor: {strategy: one_for_one}\n";
}

TEST(ConfigBounds, RejectsAnAliasBomb) {
  std::string e = error_of(alias_bomb());
  EXPECT_EQ(e.rfind("x.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find("(document): more than 100000 YAML nodes (each use of an alias counts its "
                   "whole node)"),
            std::string::npos)
      << e;
  // The same through children: a supervisor whose children alias a list
  // that aliases a list... is refused before any child is built.
  std::string nested = head + "    - &s0 {id: s0, strategy: one_for_one, children: []}\n";
  std::string prev = "*s0";
  for (int i = 1; i < 8; ++i) {
    nested += fmt::format(
        "    - &s{0} {{id: s{0}, strategy: one_for_one, children: [{1}, {1}, {1}, {1}, {1}, {1}, "
        "{1}, {1}, {1}, {1}]}}\n",
        i, prev);
    prev = "*s" + std::to_string(i);
  }
  e = error_of(nested);
  EXPECT_NE(e.find("more than 100000 YAML nodes"), std::string::npos) << e;
}

TEST(ConfigBounds, AcceptsAliasesThatShareAMapping) {
  auto r = parse_config(head +
                            "    - {id: a, command: [/bin/true], env: &e {A: '1', B: '2'}}\n"
                            "    - {id: b, command: [/bin/true], env: *e}\n",
                        "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  EXPECT_EQ((*r)->root.sup.children[1].worker.env.size(), 2u);
}

TEST(ConfigBounds, RejectsDeepNestingAndLargeDocuments) {
  std::string deep = head + "    - " + std::string(100, '[') + std::string(100, ']') + "\n";
  std::string e = error_of(deep);
  EXPECT_NE(e.find("(document): nested deeper than 64 levels"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("x.yaml:4:", 0), 0u) << e;

  // 1 MiB of YAML and a byte more: refused before parsing, by parse_config
  // and by load_config (which reads no further than that).
  std::string big = head + "# " + std::string(config_limits::document_bytes, 'x') + "\n";
  EXPECT_EQ(error_of(big), "x.yaml: the config is larger than 1048576 bytes");
  testing::temp_dir d;
  std::string f = d.path() + "/big.yaml";
  std::ofstream(f) << big;
  auto r = load_config(f);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.message(), f + ": the config is larger than 1048576 bytes");
}

TEST(ConfigBounds, RejectsDuplicateKeysInAMapping) {
  EXPECT_EQ(error_of("supervisor:\n  strategy: one_for_one\n  strategy: one_for_all\n"),
            "x.yaml:3:3: supervisor.strategy: duplicate key");
  EXPECT_EQ(error_of(head + "    - {id: a, id: b, command: [/bin/true]}\n"),
            "x.yaml:4:15: supervisor.children[0].id: duplicate key");
}

// ---- values ------------------------------------------------------------------

TEST(ConfigValues, RejectsNanInfinitiesAndOverflowingNumbers) {
  auto backoff = [](const std::string& kv) {
    return error_of(head + "    - {id: a, command: [/bin/true], backoff: {" + kv + "}}\n");
  };
  const std::string at = "x.yaml:4:";
  EXPECT_EQ(backoff("factor: nan"),
            at + "55: supervisor.children[0].backoff.factor: expected a number in [1, 100], got "
                 "'nan'");
  EXPECT_EQ(backoff("factor: inf"),
            at + "55: supervisor.children[0].backoff.factor: expected a number in [1, 100], got "
                 "'inf'");
  EXPECT_EQ(backoff("jitter: -infinity"),
            at + "55: supervisor.children[0].backoff.jitter: expected a number in [0, 1], got "
                 "'-infinity'");
  EXPECT_EQ(backoff("jitter: NAN"),
            at + "55: supervisor.children[0].backoff.jitter: expected a number in [0, 1], got "
                 "'NAN'");
  EXPECT_EQ(backoff("factor: 1e999"),
            at + "55: supervisor.children[0].backoff.factor: expected a number in [1, 100], got "
                 "'1e999'");
  EXPECT_EQ(backoff("initial: 99999999999999999999"),
            at + "56: supervisor.children[0].backoff.initial: expected an integer in [0, "
                 "3600000], got 99999999999999999999");
  EXPECT_EQ(backoff("initial: '+5'"),
            at + "56: supervisor.children[0].backoff.initial: expected an integer, got '+5'");
  EXPECT_EQ(
      error_of("supervisor:\n  strategy: one_for_one\n  max_restarts: -99999999999999999999\n"),
      "x.yaml:3:17: supervisor.max_restarts: expected an integer in [0, 1000000], got "
      "-99999999999999999999");
  EXPECT_EQ(
      error_of(head + "    - {id: a, command: [/bin/true], shutdown: 99999999999999999999}\n"),
      "x.yaml:4:47: supervisor.children[0].shutdown: expected an integer in [0, 86400000], "
      "got 99999999999999999999");
}

TEST(ConfigValues, RejectsOverflowingSizes) {
  auto size = [](const std::string& v) {
    return error_of(
        head + "    - {id: a, command: [/bin/true], stdout: {file: /tmp/x.log, max_size: " + v +
        "}}\n");
  };
  const std::string msg =
      "x.yaml:4:74: supervisor.children[0].stdout.max_size: expected a positive size such as "
      "1048576, 512K or 10M (at most 1048576G)";
  for (const char* v : {"-1", "18446744073709551615", "99999999999999999999G", "1048577G",
                        "17179869184M", "0", "0K", "'1 M'", "'+1M'", "K"}) {
    EXPECT_EQ(size(v), msg) << v;
  }
  auto ok = parse_config(
      head +
          "    - {id: a, command: [/bin/true], stdout: {file: /tmp/x.log, max_size: 1048576G}}\n",
      "x.yaml");
  ASSERT_TRUE(ok.has_value()) << ok.message();
  EXPECT_EQ((*ok)->root.sup.children[0].worker.stdout_spec.max_bytes, config_limits::size_bytes);
}

TEST(ConfigValues, RejectsBadPorts) {
  for (const char* v : {"'h:0'", "'h:65536'", "'h:99999999999999999999'", "'h:+80'", "'h: 80'",
                        "'h:'", "'h:80x'", "'h:-1'"}) {
    EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {tcp: " + v + "}}\n"),
              "x.yaml:4:54: supervisor.children[0].readiness.tcp: expected HOST:PORT, e.g. "
              "127.0.0.1:6379")
        << v;
  }
}

TEST(ConfigValues, RejectsNamesTheRuntimeWouldRefuse) {
  auto name = [](const std::string& v) {
    return error_of(head + "    - {id: a, command: [/bin/true], name: " + v + "}\n");
  };
  const std::string rule =
      "': a name is 1 to 64 letters, digits, '_', '-' or '.', not starting "
      "with '.'";
  EXPECT_EQ(name("'a b'"), "x.yaml:4:43: supervisor.children[0].name: 'a b" + rule);
  EXPECT_EQ(name("a/b"), "x.yaml:4:43: supervisor.children[0].name: 'a/b" + rule);
  EXPECT_EQ(name(".hidden"), "x.yaml:4:43: supervisor.children[0].name: '.hidden" + rule);
  EXPECT_EQ(name("''"), "x.yaml:4:43: supervisor.children[0].name: '" + rule);
  std::string long_name(65, 'n');
  EXPECT_EQ(name(long_name), "x.yaml:4:43: supervisor.children[0].name: '" + long_name + rule);
  EXPECT_TRUE(parse_config(head + "    - {id: a, command: [/bin/true], name: " +
                               std::string(64, 'n') + "}\n",
                           "x.yaml")
                  .has_value());

  EXPECT_EQ(error_of(head + "    - {id: 'a b', command: [/bin/true]}\n"),
            "x.yaml:4:12: supervisor.children[0].id: 'a b': an id is 1 to 64 letters, digits, "
            "'_', '-' or '.', not starting with '.'");
  EXPECT_EQ(error_of(head + "    - {id: ../x, command: [/bin/true]}\n"),
            "x.yaml:4:12: supervisor.children[0].id: '../x': an id is 1 to 64 letters, digits, "
            "'_', '-' or '.', not starting with '.'");
  EXPECT_EQ(error_of("node: {name: my.node}\nsupervisor: {strategy: one_for_one}\n"),
            "x.yaml:1:14: node.name: 'my.node': a node name is 1 to 64 letters, digits, '_' or "
            "'-'");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true, \"x\\0y\"]}\n"),
            "x.yaml:4:36: supervisor.children[0].command[1]: contains a NUL byte");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], env: {\"A\\0B\": x}}\n"),
            "x.yaml:4:43: supervisor.children[0].env.A\\0B: bad environment variable name");
}

// The registry is one directory per node: two children may not register the
// same name, wherever they are in the tree.
TEST(ConfigValues, RejectsDuplicateRegisteredNames) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], name: stack}\n"
                            "    - id: s\n      strategy: one_for_one\n      children:\n"
                            "        - {id: b, command: [/bin/true], name: stack}\n"),
            "x.yaml:8:47: supervisor.children[1].children[0].name: duplicate name 'stack': a "
            "registered name is unique in the node");
}

}  // namespace
}  // namespace otpd::supervisor

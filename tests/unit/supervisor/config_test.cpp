// Config validation: every error names file:line:column and the key path.
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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

// Whether this process holds cap in its permitted set: the loader accepts a
// child's capability exactly then (root, as a rule; not root in a container
// that dropped it, nor a user without file capabilities).
bool holds_permitted(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) {
    return false;
  }
  return (data[cap / 32].permitted >> (cap % 32) & 1u) != 0;
}

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
  EXPECT_EQ(w.worker->shutdown.kind, shutdown_kind::brutal_kill);
  EXPECT_EQ(w.worker->readiness.kind, readiness_kind::tcp);
  EXPECT_EQ(w.worker->readiness.port, 7000);
  EXPECT_EQ(w.worker->readiness.start_timeout_ms, 300);
  EXPECT_EQ(w.worker->stdout_spec.path, "/tmp/logs/w.log");
  EXPECT_EQ(w.worker->stdout_spec.max_bytes, 1u << 20);
  EXPECT_EQ(w.worker->stderr_spec.kind, output_kind::null);
  EXPECT_TRUE(w.worker->backoff.enabled);
  const child_spec& s = c.root.sup.children[1];
  EXPECT_TRUE(s.is_supervisor);
  EXPECT_EQ(s.sup.strat, strategy::rest_for_one);
  EXPECT_EQ(s.sup.max_restarts, 0);
  const child_spec& x = s.sup.children[0];
  EXPECT_EQ(x.worker->argv, (std::vector<std::string>{"/bin/sh", "-c", "sleep 1"}));
  EXPECT_EQ(x.worker->shutdown.signal, SIGINT);
  EXPECT_EQ(x.worker->shutdown.timeout_ms, 200);
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
            "capabilities, command, cwd, env, env_file, group, id, instances, limits, liveness, "
            "name, nice, no_new_privileges, notify_access, oom_score_adj, readiness, restart, "
            "rlimits, shell, shutdown, signal, start_timeout, stderr, stdout, stop_as_group, "
            "success_exit_codes, umask, user, watchdog_sec)");
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
  const auto& a = *(*r)->root.sup.children[0].worker;
  EXPECT_EQ(a.stdout_spec.kind, output_kind::inherit_prefixed);
  EXPECT_FALSE(a.stdout_spec.timestamps);
  EXPECT_EQ(a.stderr_spec.kind, output_kind::file);
  EXPECT_FALSE(a.stderr_spec.timestamps);
  const auto& b = *(*r)->root.sup.children[1].worker;
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
  const auto& a = *(*r)->root.sup.children[0].worker;
  EXPECT_EQ(a.success_exit_codes, (std::vector<int>{0, 3}));
  EXPECT_TRUE(a.stop_as_group);
  const auto& b = *(*r)->root.sup.children[1].worker;
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
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/proc/self/nonexistent/prog]}\n"),
            "x.yaml:4:24: supervisor.children[0].command: command not found: "
            "/proc/self/nonexistent/prog");
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
  const worker_spec& w = *(*r)->root.sup.children[0].worker;
  EXPECT_EQ(w.program, tool);
  EXPECT_EQ(w.program_found_in, "node.path");
  EXPECT_EQ(w.argv[0], "sleep");

  // The test binary sits beside otpd_test_child: found there with any PATH.
  std::string self = testing::bin_dir();
  auto r2 = parse_config(head + "    - {id: a, command: [otpd_test_child]}\n", "c.yaml");
  ASSERT_TRUE(r2.has_value()) << r2.message();
  EXPECT_EQ((*r2)->root.sup.children[0].worker->program_found_in, "otpd's directory");
  EXPECT_EQ(std::filesystem::path((*r2)->root.sup.children[0].worker->program).parent_path(),
            std::filesystem::canonical(std::filesystem::path(self)));

  auto r3 = parse_config(head + "    - {id: a, command: [sh]}\n", "c.yaml");
  ASSERT_TRUE(r3.has_value()) << r3.message();
  EXPECT_EQ((*r3)->root.sup.children[0].worker->program_found_in, "PATH");

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
  // A path that cannot exist: /proc/self/ holds only what the kernel puts
  // there (Debian's /nonexistent, nobody's home, exists wherever a program
  // running as nobody, or root, made it).
  auto r = load_config("/proc/self/nonexistent/otpd.yaml");
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(
      r.message(),
      "/proc/self/nonexistent/otpd.yaml: unable to read the config: No such file or directory");
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
  EXPECT_NE(e.find(fmt::format("(document): more than {} YAML nodes (each use of an alias counts "
                               "its whole node)",
                               config_limits::max_nodes)),
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
  EXPECT_NE(e.find(fmt::format("more than {} YAML nodes", config_limits::max_nodes)),
            std::string::npos)
      << e;
}

TEST(ConfigBounds, AcceptsAliasesThatShareAMapping) {
  auto r = parse_config(head +
                            "    - {id: a, command: [/bin/true], env: &e {A: '1', B: '2'}}\n"
                            "    - {id: b, command: [/bin/true], env: *e}\n",
                        "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  EXPECT_EQ((*r)->root.sup.children[1].worker->env.size(), 2u);
}

TEST(ConfigBounds, RejectsDeepNestingAndLargeDocuments) {
  std::string deep = head + "    - " + std::string(100, '[') + std::string(100, ']') + "\n";
  std::string e = error_of(deep);
  EXPECT_NE(e.find("(document): nested deeper than 64 levels"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("x.yaml:4:", 0), 0u) << e;

  // The limit and a byte more: refused before parsing, by parse_config
  // and by load_config (which reads no further than that).
  std::string big = head + "# " + std::string(config_limits::document_bytes, 'x') + "\n";
  const std::string too_big =
      fmt::format("the config is larger than {} bytes", config_limits::document_bytes);
  EXPECT_EQ(error_of(big), "x.yaml: " + too_big);
  testing::temp_dir d;
  std::string f = d.path() + "/big.yaml";
  std::ofstream(f) << big;
  auto r = load_config(f);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.message(), f + ": " + too_big);
}

// The scale otpd is built for fits the bounds: 10,000 children, each with
// a command, its output and an env entry.
TEST(ConfigBounds, AcceptsTenThousandChildren) {
  std::string yaml = head;
  for (int i = 0; i < 10000; ++i) {
    yaml += fmt::format(
        "    - {{id: worker-{0}, command: [/bin/sleep, --port, '{0}'], stdout: "
        "null, stderr: null, env: {{SHARD: '{0}'}}}}\n",
        i);
  }
  ASSERT_LT(yaml.size(), config_limits::document_bytes);
  auto r = parse_config(yaml, "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  EXPECT_EQ((*r)->root.sup.children.size(), 10000U);
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
  EXPECT_EQ((*ok)->root.sup.children[0].worker->stdout_spec.max_bytes, config_limits::size_bytes);
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

TEST(ConfigInstances, ExpandsIntoNumberedChildrenWithTheirNumberSubstituted) {
  auto r = parse_config(head +
                            "    - {id: first, command: [/bin/true]}\n"
                            "    - id: web\n      instances: 3\n      name: 'web{instance}'\n"
                            "      command: [/bin/echo, --port, '80{instance}']\n"
                            "      env: {SLOT: 'slot-{instance}', KEEP: '{other}'}\n"
                            "      readiness: {tcp: '127.0.0.1:90{instance}'}\n"
                            "    - {id: last, command: [/bin/true]}\n",
                        "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const auto& kids = (*r)->root.sup.children;
  ASSERT_EQ(kids.size(), 5u);
  EXPECT_EQ(kids[0].id, "first");
  EXPECT_EQ(kids[4].id, "last");
  for (int k = 0; k < 3; ++k) {
    const child_spec& c = kids[static_cast<std::size_t>(k) + 1];
    EXPECT_EQ(c.id, fmt::format("web-{}", k));
    EXPECT_EQ(c.name, fmt::format("web{}", k));
    EXPECT_EQ(c.instance_of, "web");
    EXPECT_EQ(c.instance, k);
    EXPECT_EQ(c.worker->argv,
              (std::vector<std::string>{"/bin/echo", "--port", fmt::format("80{}", k)}));
    EXPECT_EQ(c.worker->readiness.port, 900 + k);
    env_list want{{"SLOT", fmt::format("slot-{}", k)}, {"KEEP", "{other}"}};
    EXPECT_EQ(c.worker->env, want);
  }
  EXPECT_EQ(kids[0].instance, -1);
  // Each instance has its own fingerprint: a reload that changes the count
  // adds or removes instances and leaves the others alone.
  EXPECT_NE(kids[1].fingerprint, kids[2].fingerprint);
}

TEST(ConfigInstances, RejectsBadCountsCollisionsAndSupervisors) {
  EXPECT_EQ(
      error_of(head + "    - {id: w, command: [/bin/true], instances: 0}\n"),
      "x.yaml:4:48: supervisor.children[0].instances: expected an integer in [1, 1000], got 0");
  EXPECT_EQ(error_of(head + "    - {id: w, command: [/bin/true], instances: 2, name: api}\n"),
            "x.yaml:4:7: supervisor.children[0](instance 1).name: duplicate name 'api': a "
            "registered name is unique in the node");
  EXPECT_EQ(error_of(head + "    - {id: w-1, command: [/bin/true]}\n"
                            "    - {id: w, command: [/bin/true], instances: 2}\n"),
            "x.yaml:5:7: supervisor.children[1].id: duplicate id 'w-1' (from instances)");
  EXPECT_NE(error_of(head + "    - {id: s, strategy: one_for_one, instances: 2, children: []}\n")
                .find("supervisor.children[0].instances: unknown key"),
            std::string::npos);
  // A value that is wrong only once substituted still names the child's line.
  EXPECT_EQ(error_of(head + "    - {id: w, command: [/bin/true], instances: 2,\n"
                            "       readiness: {tcp: '127.0.0.1:7{instance}0000'}}\n"),
            "x.yaml:4:7: supervisor.children[0](instance 0).readiness.tcp: expected HOST:PORT, "
            "e.g. 127.0.0.1:6379");
}

// rlimits, umask, nice, oom_score_adj, no_new_privileges, capabilities.
TEST(ConfigIdentity, ParsesLimitsAndIdentity) {
  auto r = parse_config(
      head +
          "    - id: a\n      command: [/bin/true]\n"
          "      rlimits: {nofile: [1024, 4096], core: unlimited, stack: 8M,\n"
          "                cpu: 60, nice: 0}\n"
          "      umask: \"0027\"\n      nice: 5\n      oom_score_adj: -100\n"
          "      no_new_privileges: true\n" +
          // Capabilities otpd does not hold are refused
          // (CapabilitiesNeedRoot below covers that case).
          std::string(holds_permitted(CAP_NET_BIND_SERVICE) && holds_permitted(CAP_KILL)
                          ? "      capabilities: [CAP_NET_BIND_SERVICE, kill]\n"
                          : "") +
          "    - {id: b, command: [/bin/true]}\n",
      "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const auto& a = *(*r)->root.sup.children[0].worker;
  ASSERT_EQ(a.rlimits.size(), 5u);
  // In the order of config_keys::rlimits, whatever the order written.
  EXPECT_EQ(a.rlimits[0].resource, RLIMIT_NOFILE);
  EXPECT_EQ(a.rlimits[0].soft, 1024u);
  EXPECT_EQ(a.rlimits[0].hard, 4096u);
  EXPECT_EQ(a.rlimits[1].resource, RLIMIT_CORE);
  EXPECT_EQ(a.rlimits[1].soft, RLIM_INFINITY);
  EXPECT_EQ(a.rlimits[1].hard, RLIM_INFINITY);
  EXPECT_EQ(a.rlimits[2].resource, RLIMIT_STACK);
  EXPECT_EQ(a.rlimits[2].soft, 8u << 20);
  EXPECT_EQ(a.rlimits[3].resource, RLIMIT_CPU);
  EXPECT_EQ(a.rlimits[3].hard, 60u);
  EXPECT_EQ(a.rlimits[4].resource, RLIMIT_NICE);
  EXPECT_EQ(a.umask, mode_t{027});
  EXPECT_EQ(a.nice, 5);
  EXPECT_EQ(a.oom_score_adj, -100);
  EXPECT_TRUE(a.no_new_privileges);
  EXPECT_EQ(a.capabilities, holds_permitted(CAP_NET_BIND_SERVICE) && holds_permitted(CAP_KILL)
                                ? (std::uint64_t{1} << 10) | (std::uint64_t{1} << 5)
                                : 0u);
  const auto& b = *(*r)->root.sup.children[1].worker;
  EXPECT_TRUE(b.rlimits.empty());
  EXPECT_FALSE(b.umask || b.nice || b.oom_score_adj);
  EXPECT_FALSE(b.no_new_privileges);
  EXPECT_EQ(b.capabilities, 0u);
}

TEST(ConfigIdentity, RejectsBadLimitsWithLineAndKey) {
  auto bad = [](const std::string& keys) {
    return error_of(head + "    - {id: a, command: [/bin/true], " + keys + "}\n");
  };
  EXPECT_EQ(bad("rlimits: {nofiles: 5}"),
            "x.yaml:4:47: supervisor.children[0].rlimits.nofiles: unknown key (expected one of "
            "as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rtprio, "
            "sigpending, stack)");
  EXPECT_EQ(bad("rlimits: {nofile: unlimited}"),
            "x.yaml:4:55: supervisor.children[0].rlimits.nofile: nofile cannot be unlimited (the "
            "kernel caps it at fs.nr_open)");
  EXPECT_EQ(bad("rlimits: {nofile: [20, 10]}"),
            "x.yaml:4:55: supervisor.children[0].rlimits.nofile: the soft limit is above the hard "
            "one");
  EXPECT_EQ(bad("rlimits: {nofile: [20]}"),
            "x.yaml:4:55: supervisor.children[0].rlimits.nofile: expected a value or [soft, hard]");
  EXPECT_EQ(bad("rlimits: {nproc: -1}"),
            "x.yaml:4:54: supervisor.children[0].rlimits.nproc: expected an integer in [0, "
            "2^64-2] or unlimited, got '-1'");
  EXPECT_EQ(bad("rlimits: {stack: 8X}"),
            "x.yaml:4:54: supervisor.children[0].rlimits.stack: expected bytes (such as 8388608, "
            "512K, 64M, 1G) or unlimited, got '8X'");
  EXPECT_EQ(bad("rlimits: {as: 99999999999T}"),
            "x.yaml:4:51: supervisor.children[0].rlimits.as: expected bytes (such as 8388608, "
            "512K, 64M, 1G) or unlimited, got '99999999999T'");
  EXPECT_EQ(bad("rlimits: {rtprio: 100}"),
            "x.yaml:4:55: supervisor.children[0].rlimits.rtprio: expected an integer in [0, 99] "
            "or unlimited, got '100'");
  EXPECT_EQ(bad("rlimits: [nofile]"),
            "x.yaml:4:46: supervisor.children[0].rlimits: expected a mapping");
  EXPECT_EQ(bad("umask: \"0999\""),
            "x.yaml:4:44: supervisor.children[0].umask: expected an octal mode such as \"0027\" "
            "(at most 0777), got '0999'");
  EXPECT_EQ(bad("umask: \"01777\""),
            "x.yaml:4:44: supervisor.children[0].umask: expected an octal mode such as \"0027\" "
            "(at most 0777), got '01777'");
  EXPECT_EQ(bad("nice: 20"),
            "x.yaml:4:43: supervisor.children[0].nice: expected an integer in [-20, 19], got 20");
  EXPECT_EQ(bad("oom_score_adj: -1001"),
            "x.yaml:4:52: supervisor.children[0].oom_score_adj: expected an integer in [-1000, "
            "1000], got -1001");
  EXPECT_EQ(bad("no_new_privileges: maybe"),
            "x.yaml:4:56: supervisor.children[0].no_new_privileges: expected true or false, got "
            "'maybe'");
  EXPECT_EQ(bad("capabilities: CAP_KILL"),
            "x.yaml:4:51: supervisor.children[0].capabilities: expected a list of capabilities, "
            "e.g. [CAP_NET_BIND_SERVICE]");
  // An unknown name is refused before any question of who may hand it on.
  EXPECT_EQ(bad("capabilities: [CAP_FLY, CAP_KILL]"),
            "x.yaml:4:52: supervisor.children[0].capabilities[0]: unknown capability 'CAP_FLY' "
            "(capabilities(7): CAP_NET_BIND_SERVICE, ...)");
}

// A child can be given only capabilities otpd holds itself (in its
// permitted set); otherwise --check refuses the key and says why: as
// another user than root, that it needs root.
TEST(ConfigIdentity, CapabilitiesNeedRoot) {
  auto r = parse_config(head + "    - {id: a, command: [/bin/true], capabilities: [CAP_KILL]}\n",
                        "x.yaml");
  if (holds_permitted(CAP_KILL)) {
    ASSERT_TRUE(r.has_value()) << "CAP_KILL is in our permitted set: " << r.message();
    EXPECT_EQ((*r)->root.sup.children[0].worker->capabilities, std::uint64_t{1} << 5);
  } else if (::geteuid() != 0) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.message(),
              "x.yaml:4:52: supervisor.children[0].capabilities[0]: capabilities need otpd "
              "to run as root (it runs as uid " +
                  std::to_string(::geteuid()) + ")");
  } else {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.message(),
              "x.yaml:4:52: supervisor.children[0].capabilities[0]: otpd itself does not hold "
              "CAP_KILL (not in its permitted set), so it cannot hand it on");
  }
}

// A hard limit above ours needs CAP_SYS_RESOURCE: refused at --check
// exactly when the start would fail.
TEST(ConfigIdentity, HardLimitAboveOursNeedsCapSysResource) {
  struct rlimit own {};
  // sigpending's hard limit is finite on every system (a count of signals).
  ASSERT_EQ(::getrlimit(RLIMIT_SIGPENDING, &own), 0);
  ASSERT_NE(own.rlim_max, RLIM_INFINITY);
  std::string yaml = head + fmt::format(
                                "    - {{id: a, command: [/bin/true], rlimits: "
                                "{{sigpending: {}}}}}\n",
                                own.rlim_max + 1);
  auto r = parse_config(yaml, "x.yaml");
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  ASSERT_EQ(::syscall(SYS_capget, &hdr, data), 0);
  if ((data[0].effective >> CAP_SYS_RESOURCE & 1u) != 0) {
    EXPECT_TRUE(r.has_value()) << r.message();
  } else {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.message(),
              fmt::format("x.yaml:4:59: supervisor.children[0].rlimits.sigpending: a hard limit "
                          "above otpd's own ({}) needs CAP_SYS_RESOURCE, which otpd does not hold",
                          own.rlim_max));
  }
}

// env_file: parsed at load (relative to the config's directory), every
// malformed line named by file and line.
TEST(ConfigIdentity, EnvFileIsParsedAtLoadWithFileAndLine) {
  testing::temp_dir dir("otpd-cfg");
  std::string cfg = dir.path() + "/x.yaml";
  std::string envf = dir.path() + "/app.env";
  std::ofstream(envf) << "# c\n\nA=1\nexport B = 'two words'\n";
  std::string yaml = head + "    - {id: a, command: [/bin/true], env_file: app.env}\n";
  auto r = parse_config(yaml, cfg);
  ASSERT_TRUE(r.has_value()) << r.message();
  EXPECT_EQ((*r)->root.sup.children[0].worker->env_file, envf);

  std::ofstream(envf) << "A=1\n\nB=\"open\n";
  r = parse_config(yaml, cfg);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.message(), cfg + ":4:47: supervisor.children[0].env_file: " + envf +
                             ":3: B: unterminated double-quoted value (a value is one line)");
  std::filesystem::remove(envf);
  r = parse_config(yaml, cfg);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.message(), cfg + ":4:47: supervisor.children[0].env_file: " + envf +
                             ": unable to read the env_file: No such file or directory");
}

TEST(EnvFile, ParsesLinesQuotesAndComments) {
  auto r = parse_env_file(
      "# comment\n"
      "\n"
      "   \n"
      "A=plain value  \n"
      "export B=exported\n"
      "C='single \\n $X # kept'\n"
      "D=\"double \\\"q\\\" \\\\ \\$X \\n end\"  # trailing comment\n"
      "E=\n"
      "  F = spaced\r\n"
      "G=a=b#c\n",
      "f.env");
  ASSERT_TRUE(r.has_value()) << r.message();
  env_list want{{"A", "plain value"},
                {"B", "exported"},
                {"C", "single \\n $X # kept"},
                {"D", "double \"q\" \\ $X \n end"},
                {"E", ""},
                {"F", "spaced"},
                {"G", "a=b#c"}};
  EXPECT_EQ(*r, want);
}

TEST(EnvFile, RejectsMalformedLinesByFileAndLine) {
  auto error = [](const std::string& text) {
    auto r = parse_env_file(text, "f.env");
    EXPECT_FALSE(r.has_value()) << text;
    return r.message();
  };
  EXPECT_EQ(error("A=1\nnot a line\n"), "f.env:2: expected KEY=VALUE");
  EXPECT_EQ(error("1A=x\n"),
            "f.env:1: '1A' is not a variable name (letters, digits and '_', not starting with a "
            "digit)");
  EXPECT_EQ(error("=x\n"),
            "f.env:1: '' is not a variable name (letters, digits and '_', not starting with a "
            "digit)");
  EXPECT_EQ(error("A-B=x\n"),
            "f.env:1: 'A-B' is not a variable name (letters, digits and '_', not starting with a "
            "digit)");
  EXPECT_EQ(error("\n\nA='open\n"),
            "f.env:3: A: unterminated single-quoted value (a value is one line)");
  EXPECT_EQ(error("A=\"x\" y\n"), "f.env:1: A: text after the closing quote");
  EXPECT_EQ(error("A=\"\\q\"\n"), "f.env:1: A: unknown escape \\q in a double-quoted value");
  EXPECT_EQ(error(std::string("A=x\0y\n", 6)), "f.env:1: contains a NUL byte");
}

TEST(Capabilities, NamesBothWays) {
  EXPECT_EQ(capability_from_name("CAP_NET_BIND_SERVICE"), 10);
  EXPECT_EQ(capability_from_name("net_bind_service"), 10);
  EXPECT_EQ(capability_from_name("cap_checkpoint_restore"), 40);
  EXPECT_EQ(capability_from_name("CAP_"), -1);
  EXPECT_EQ(capability_from_name("NET_BIND_SERVICEX"), -1);
  EXPECT_EQ(capability_name(10), "CAP_NET_BIND_SERVICE");
  EXPECT_EQ(capability_name(0), "CAP_CHOWN");
}
// ---- probes: addresses, http, liveness --------------------------------------

worker_spec worker_of(const std::string& extra) {
  auto r = parse_config(head + "    - {id: a, command: [/bin/true], " + extra + "}\n", "x.yaml");
  EXPECT_TRUE(r.has_value()) << r.message();
  return r ? *(*r)->root.sup.children.at(0).worker : worker_spec{};
}

TEST(ConfigProbes, AddressesTakeHostNamesAndBracketedIpv6) {
  auto w = worker_of("readiness: {tcp: 'localhost:8080'}");
  EXPECT_EQ(w.readiness.host, "localhost");
  EXPECT_EQ(w.readiness.port, 8080);
  w = worker_of("readiness: {tcp: '[::1]:9000'}");
  EXPECT_EQ(w.readiness.host, "::1");
  EXPECT_EQ(w.readiness.port, 9000);
  w = worker_of("readiness: {tcp: ':7000'}");
  EXPECT_EQ(w.readiness.host, "127.0.0.1");
  w = worker_of("readiness: {tcp: 'db-1.example.org:5432'}");
  EXPECT_EQ(w.readiness.host, "db-1.example.org");
  EXPECT_EQ(w.readiness.port, 5432);
}

TEST(ConfigProbes, RejectsBadHosts) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {tcp: '::1:80'}}\n"),
            "x.yaml:4:54: supervisor.children[0].readiness.tcp: an IPv6 address goes in brackets, "
            "e.g. [::1]:8080");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {tcp: '[nope]:80'}}\n"),
            "x.yaml:4:54: supervisor.children[0].readiness.tcp: 'nope' is not an IPv6 address");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {tcp: 'a b:80'}}\n"),
            "x.yaml:4:54: supervisor.children[0].readiness.tcp: 'a b' is not a host name or an IP "
            "address");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {tcp: '[::1]'}}\n"),
            "x.yaml:4:54: supervisor.children[0].readiness.tcp: expected HOST:PORT, e.g. "
            "127.0.0.1:6379");
}

TEST(ConfigProbes, HttpReadinessTakesAUrl) {
  auto w = worker_of("readiness: {http: 'http://localhost:8080/healthz?full=1'}");
  EXPECT_EQ(w.readiness.kind, readiness_kind::http);
  EXPECT_EQ(w.readiness.host, "localhost");
  EXPECT_EQ(w.readiness.port, 8080);
  EXPECT_EQ(w.readiness.http_path, "/healthz?full=1");
  w = worker_of("readiness: {http: '[::1]'}");
  EXPECT_EQ(w.readiness.host, "::1");
  EXPECT_EQ(w.readiness.port, 80);
  EXPECT_EQ(w.readiness.http_path, "/");
  EXPECT_EQ(
      error_of(head + "    - {id: a, command: [/bin/true], readiness: {http: 'https://h/x'}}\n"),
      "x.yaml:4:55: supervisor.children[0].readiness.http: https is not supported (a probe "
      "speaks plain HTTP): probe a plain port");
  EXPECT_EQ(
      error_of(head +
               "    - {id: a, command: [/bin/true], readiness: {http: \"h:80/a\\r\\nX: y\"}}\n"),
      "x.yaml:4:55: supervisor.children[0].readiness.http: the path must be at most 1024 "
      "printable characters, without blanks");
}

TEST(ConfigProbes, ReadinessTakesExactlyOneProbe) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], "
                            "readiness: {tcp: ':80', unix: /tmp/s}}\n"),
            "x.yaml:4:48: supervisor.children[0].readiness: expected exec, notify, "
            "sd_notify, {tcp: HOST:PORT}, {unix: PATH}, {http: URL} or {command: ...}");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: {interval: 5}}\n"),
            "x.yaml:4:48: supervisor.children[0].readiness: expected exec, notify, "
            "sd_notify, {tcp: HOST:PORT}, {unix: PATH}, {http: URL} or {command: ...}");
}

TEST(ConfigProbes, LivenessDefaultsAndValues) {
  auto w = worker_of("liveness: {tcp: 'localhost:6379'}");
  EXPECT_TRUE(w.liveness.enabled);
  EXPECT_EQ(w.liveness.kind, probe_kind::tcp);
  EXPECT_EQ(w.liveness.host, "localhost");
  EXPECT_EQ(w.liveness.port, 6379);
  EXPECT_EQ(w.liveness.interval_ms, 10000);
  EXPECT_EQ(w.liveness.timeout_ms, 1000);
  EXPECT_EQ(w.liveness.failures, 3);
  EXPECT_EQ(w.liveness.initial_delay_ms, 0);
  w = worker_of(
      "liveness: {http: 'http://[::1]:8080/health', interval: 200, timeout: 50, failures: 2, "
      "initial_delay: 1000}");
  EXPECT_EQ(w.liveness.kind, probe_kind::http);
  EXPECT_EQ(w.liveness.host, "::1");
  EXPECT_EQ(w.liveness.path, "/health");
  EXPECT_EQ(w.liveness.interval_ms, 200);
  EXPECT_EQ(w.liveness.timeout_ms, 50);
  EXPECT_EQ(w.liveness.failures, 2);
  EXPECT_EQ(w.liveness.initial_delay_ms, 1000);
  w = worker_of("liveness: {command: 'test -e /tmp'}");
  EXPECT_EQ(w.liveness.kind, probe_kind::command);
  EXPECT_EQ(w.liveness.command, (std::vector<std::string>{"/bin/sh", "-c", "test -e /tmp"}));
  w = worker_of("liveness: {unix: /run/x.sock}");
  EXPECT_EQ(w.liveness.kind, probe_kind::unix_socket);
  EXPECT_EQ(w.liveness.path, "/run/x.sock");
  EXPECT_FALSE(worker_of("readiness: notify").liveness.enabled);
}

TEST(ConfigProbes, RejectsBadLiveness) {
  auto err = [](const std::string& l) {
    return error_of(head + "    - {id: a, command: [/bin/true], liveness: " + l + "}\n");
  };
  EXPECT_EQ(err("{interval: 100}"),
            "x.yaml:4:47: supervisor.children[0].liveness: expected one of {tcp: HOST:PORT}, "
            "{unix: PATH}, {http: URL} or {command: ...}");
  EXPECT_EQ(err("{tcp: ':80', http: ':80'}"),
            "x.yaml:4:47: supervisor.children[0].liveness: expected one of {tcp: HOST:PORT}, "
            "{unix: PATH}, {http: URL} or {command: ...}");
  EXPECT_EQ(err("{tcp: ':80', failures: 0}"),
            "x.yaml:4:70: supervisor.children[0].liveness.failures: expected an integer in "
            "[1, 1000], got 0");
  EXPECT_EQ(err("{tcp: ':80', interval: 5}"),
            "x.yaml:4:70: supervisor.children[0].liveness.interval: expected an integer in "
            "[10, 86400000], got 5");
  EXPECT_EQ(err("{tcp: ':80', timeout: 0}"),
            "x.yaml:4:69: supervisor.children[0].liveness.timeout: expected an integer in "
            "[1, 3600000], got 0");
  EXPECT_EQ(err("{tcp: ':80', period: 5}"),
            "x.yaml:4:60: supervisor.children[0].liveness.period: unknown key (expected one of "
            "command, failures, http, initial_delay, interval, tcp, timeout, unix)");
  EXPECT_EQ(err("notify"), "x.yaml:4:47: supervisor.children[0].liveness: expected a mapping");
  EXPECT_EQ(err("{unix: /" + std::string(200, 'x') + "}"),
            "x.yaml:4:54: supervisor.children[0].liveness.unix: a socket path has at most 107 "
            "bytes");
}

// ---- sd_notify from children: readiness, watchdog_sec, notify_access ------------

TEST(ConfigSdNotify, ReadinessWatchdogAndAccess) {
  auto w = worker_of("readiness: sd_notify");
  EXPECT_EQ(w.readiness.kind, readiness_kind::sd_notify);
  EXPECT_EQ(w.watchdog_usec, 0u);
  EXPECT_FALSE(w.notify_access.has_value());
  EXPECT_TRUE(w.speaks_sd_notify());
  w = worker_of("watchdog_sec: 1.5");
  EXPECT_EQ(w.readiness.kind, readiness_kind::exec);
  EXPECT_EQ(w.watchdog_usec, 1500000u);
  EXPECT_TRUE(w.speaks_sd_notify());
  w = worker_of("watchdog_sec: 30, notify_access: main");
  EXPECT_EQ(w.watchdog_usec, 30000000u);
  EXPECT_EQ(w.notify_access, notify_access_kind::main);
  w = worker_of("notify_access: all");
  EXPECT_EQ(w.notify_access, notify_access_kind::all);
  EXPECT_TRUE(w.speaks_sd_notify());
  EXPECT_FALSE(worker_of("readiness: notify").speaks_sd_notify());
}

TEST(ConfigSdNotify, RejectsBadValues) {
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], watchdog_sec: 0}\n"),
            "x.yaml:4:51: supervisor.children[0].watchdog_sec: expected a number in [0.01, "
            "86400], got '0'");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], watchdog_sec: 5s}\n"),
            "x.yaml:4:51: supervisor.children[0].watchdog_sec: expected a number in [0.01, "
            "86400], got '5s'");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], notify_access: exec}\n"),
            "x.yaml:4:52: supervisor.children[0].notify_access: expected one of main or all");
  EXPECT_EQ(error_of(head + "    - {id: a, command: [/bin/true], readiness: sd-notify}\n"),
            "x.yaml:4:48: supervisor.children[0].readiness: expected one of exec, notify, or "
            "sd_notify");
}

// Children whose workers are equal share one worker_spec (10,000 children
// of a generated list hold one); different ones, and copies changed through
// edit(), do not.
TEST(ConfigShare, EqualWorkersShareOneSpec) {
  auto r = parse_config(
      "supervisor:\n  strategy: one_for_one\n  children:\n"
      "    - {id: a, command: [/bin/sleep, '5'], stdout: null}\n"
      "    - {id: b, command: [/bin/sleep, '5'], stdout: null}\n"
      "    - {id: c, command: [/bin/sleep, '6'], stdout: null}\n"
      "    - {id: d, command: [/bin/sleep, '5'], stdout: null, env: {X: '1'}}\n"
      "    - {id: e, command: [/bin/sleep, '5'], stdout: null, restart: temporary}\n"
      "    - {id: i, command: [/bin/sleep, '5'], stdout: null, instances: 2}\n"
      "    - {id: j, command: [/bin/sleep, '{instance}'], stdout: null, instances: 2}\n",
      "x.yaml");
  ASSERT_TRUE(r.has_value()) << r.message();
  const auto& k = (*r)->root.sup.children;
  ASSERT_EQ(k.size(), 9u);
  EXPECT_TRUE(k[0].worker.shares_with(k[1].worker));
  EXPECT_FALSE(k[0].worker.shares_with(k[2].worker));
  EXPECT_FALSE(k[0].worker.shares_with(k[3].worker));
  EXPECT_TRUE(k[0].worker.shares_with(k[4].worker));  // restart is the child's, not the worker's
  EXPECT_TRUE(k[0].worker.shares_with(k[5].worker));
  EXPECT_TRUE(k[5].worker.shares_with(k[6].worker));
  EXPECT_FALSE(k[7].worker.shares_with(k[8].worker));
  EXPECT_EQ(k[8].worker->argv, (std::vector<std::string>{"/bin/sleep", "1"}));
  EXPECT_EQ(k[3].worker->env, (env_list{{"X", "1"}}));
  EXPECT_EQ(k[1].id, "b");

  child_spec copy = k[1];
  EXPECT_TRUE(copy.worker.shares_with(k[1].worker));
  copy.worker.edit().argv[1] = "7";
  EXPECT_FALSE(copy.worker.shares_with(k[1].worker));
  EXPECT_EQ(k[1].worker->argv[1], "5");
  EXPECT_EQ(copy.worker->argv[1], "7");
  // A supervisor's worker is the one empty spec; editing it copies.
  child_spec sup;
  EXPECT_TRUE(sup.worker->argv.empty());
  sup.worker.edit().argv = {"x"};
  EXPECT_TRUE(child_spec{}.worker->argv.empty());
}

}  // namespace
}  // namespace otpd::supervisor

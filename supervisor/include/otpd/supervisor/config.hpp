#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <otpd/core/result.hpp>

namespace otpd::supervisor {

enum class strategy : std::uint8_t { one_for_one, one_for_all, rest_for_one, simple_one_for_one };
enum class restart_type : std::uint8_t { permanent, transient, temporary };
enum class readiness_kind : std::uint8_t { exec, notify, tcp, unix_socket, command };
// inherit_prefixed: each line on otpd's own stdout / stderr behind the
// child's path ("[web/api] line"), for docker logs and kubectl logs.
// journald: a journal stream handed to the child (identifier: its path);
// syslog: each line a syslog message (ident: its path).
enum class output_kind : std::uint8_t { inherit, null, file, inherit_prefixed, journald, syslog };
// Where otpd's own log lines and events go (node.log_target).
enum class log_target_kind : std::uint8_t { stderr_stream, journald, syslog };
enum class shutdown_kind : std::uint8_t { timeout, brutal_kill, infinity };

[[nodiscard]] const char* to_string(strategy s) noexcept;
[[nodiscard]] const char* to_string(restart_type r) noexcept;

using env_list = std::vector<std::pair<std::string, std::string>>;

struct shutdown_spec {
  shutdown_kind kind = shutdown_kind::timeout;
  int timeout_ms = 5000;
  int signal = SIGTERM;
};

struct readiness_spec {
  readiness_kind kind = readiness_kind::exec;
  std::string host;                  // tcp
  int port = 0;                      // tcp
  std::string path;                  // unix socket
  std::vector<std::string> command;  // command (argv)
  int start_timeout_ms = 5000;
  int probe_interval_ms = 10;  // tcp / unix / command: time between probes
};

// Where a child's stdout or stderr goes. Files are written by otpd from a pipe,
// so it can rotate them by size without the child's help.
struct output_spec {
  output_kind kind = output_kind::inherit;
  std::string path;  // absolute (relative paths are resolved against the config's directory)
  std::uint64_t max_bytes = 10u << 20;
  int keep = 5;  // rotated files kept: path.1 .. path.keep
  bool rotate = true;
  // Each captured line starts with its wall-clock time (RFC 3339 UTC, ms).
  // Default: on for a file, off for inherit_prefixed (docker stamps its own).
  bool timestamps = true;
};

// Opt-in delay before a restart. Intensity still counts every restart.
struct backoff_spec {
  bool enabled = false;
  int initial_ms = 100;
  int max_ms = 10000;
  double factor = 2.0;
  double jitter = 0.1;  // +-10 %
  int reset_after_ms = 10000;
};

struct worker_spec {
  std::vector<std::string> argv;  // a shell command is {"/bin/sh", "-c", text}
  // The file otpd executes: argv[0] resolved when the config is loaded, so a
  // config means the same whoever runs it (see node_spec::path). argv[0]
  // itself is handed to the child as written.
  std::string program;
  std::string program_found_in;  // how program was found: "node.path", "otpd's directory", "PATH",
                                 // "as written"
  env_list env;
  std::string cwd;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  shutdown_spec shutdown;
  readiness_spec readiness;
  output_spec stdout_spec;
  output_spec stderr_spec;
  backoff_spec backoff;
  // transient: the exit codes that count as a normal exit (not restarted).
  std::vector<int> success_exit_codes{0};
  // Send the stop signal to the child's whole process group, not only to it
  // (supervisord's stopasgroup): helpers it started get a chance to stop too.
  bool stop_as_group = false;
};

struct child_spec;

struct supervisor_spec {
  strategy strat = strategy::one_for_one;
  int max_restarts = 3;
  int max_seconds = 5;
  std::vector<child_spec> children;
  // simple_one_for_one only: what start-child starts.
  std::shared_ptr<const child_spec> child_template;
};

struct child_spec {
  std::string id;
  std::string name;  // registered name; empty: none
  restart_type restart = restart_type::permanent;
  bool is_supervisor = false;
  worker_spec worker;   // when !is_supervisor
  supervisor_spec sup;  // when is_supervisor
  // The YAML of this child (without nested children): reload compares these
  // to tell a changed child from an untouched one.
  std::string fingerprint;
};

// The control socket's limits (node.control; docs/SECURITY.md says why).
struct control_spec {
  int max_connections = 64;  // long-lived connections; a reserve for one-shot ones is kept above
  int idle_timeout_s = 60;   // a connection with no request (and no subscription) is closed
};

struct node_spec {
  std::string name = "otpd";
  std::string runtime_dir;  // empty: default_runtime_dir()
  // Directories searched first for a command given as a bare name (relative
  // ones against the config's directory); then the directory of the otpd
  // binary itself, then PATH.
  std::vector<std::string> path;
  env_list env;
  control_spec control;
  log_target_kind log_target = log_target_kind::stderr_stream;
};

// The keys the loader accepts in each mapping of a config file, one list per
// section of otpd.yaml(5); a test holds the man page to exactly these.
namespace config_keys {
inline constexpr std::array<std::string_view, 2> top{"node", "supervisor"};
inline constexpr std::array<std::string_view, 6> node{"name", "runtime_dir", "env",
                                                      "path", "control",     "log_target"};
// node.control.
inline constexpr std::array<std::string_view, 2> control{"max_connections", "idle_timeout"};
// The root supervisor (the top-level `supervisor:` mapping).
inline constexpr std::array<std::string_view, 5> root_supervisor{
    "strategy", "max_restarts", "max_seconds", "children", "template"};
// A child with `strategy` or `children`: a nested supervisor.
inline constexpr std::array<std::string_view, 7> supervisor_child{
    "id", "strategy", "max_restarts", "max_seconds", "restart", "children", "template"};
inline constexpr std::array<std::string_view, 18> worker{"id",
                                                         "name",
                                                         "command",
                                                         "shell",
                                                         "env",
                                                         "cwd",
                                                         "user",
                                                         "group",
                                                         "restart",
                                                         "shutdown",
                                                         "signal",
                                                         "readiness",
                                                         "start_timeout",
                                                         "stdout",
                                                         "stderr",
                                                         "backoff",
                                                         "success_exit_codes",
                                                         "stop_as_group"};
// stdout / stderr given as a mapping.
inline constexpr std::array<std::string_view, 6> output{"file",   "max_size",   "keep",
                                                        "rotate", "timestamps", "to"};
// readiness given as a mapping.
inline constexpr std::array<std::string_view, 4> readiness{"tcp", "unix", "command", "interval"};
inline constexpr std::array<std::string_view, 5> backoff{"initial", "max", "factor", "jitter",
                                                         "reset_after"};
}  // namespace config_keys

// What the loader accepts at most (docs/SECURITY.md): a config is read by a
// root daemon, so a bad one must end in an error, never in memory exhaustion.
namespace config_limits {
inline constexpr std::size_t document_bytes = 1u << 20;  // 1 MiB of YAML
// YAML nodes walked, each use of an alias counting its whole node again.
inline constexpr std::size_t max_nodes = 100000;
inline constexpr int max_depth = 64;                     // nesting of mappings and lists
inline constexpr std::uint64_t size_bytes = 1ull << 50;  // a size value (max_size ...)
inline constexpr std::size_t name_chars = 64;            // an id, a name, node.name
}  // namespace config_limits

struct config {
  std::string path;  // the file it came from
  node_spec node;
  child_spec root;  // is_supervisor, id "root"
};

// Reads and validates a config file. On error returns errc::invalid_argument
// whose message() is "FILE:LINE:COL: KEY.PATH: what is wrong".
[[nodiscard]] core::Result<std::shared_ptr<const config>> load_config(const std::string& path);
// The same from text (file is only used in messages and to resolve relative paths).
[[nodiscard]] core::Result<std::shared_ptr<const config>> parse_config(const std::string& text,
                                                                       const std::string& file);

// What of c writes to journald or syslog and cannot reach it now, one line
// each ("web/api's stdout: journald: /run/systemd/journal/stdout: No such
// file or directory"); empty when all is reachable. otpd refuses to start
// with any; --check only warns (a packaged config validates anywhere).
[[nodiscard]] std::vector<std::string> unreachable_log_targets(const config& c);

}  // namespace otpd::supervisor

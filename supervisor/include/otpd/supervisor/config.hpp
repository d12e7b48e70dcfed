#pragma once

#include <signal.h>
#include <sys/resource.h>
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
// sd_notify: READY=1 from the child on otpd's notify socket (systemd's
// protocol, docs/ARCHITECTURE.md "sd_notify from children").
enum class readiness_kind : std::uint8_t {
  exec,
  notify,
  tcp,
  unix_socket,
  command,
  http,
  sd_notify
};
// Who may speak sd_notify for a child (systemd's NotifyAccess=): main, the
// worker's own process; all, any process in its cgroup (cgroup mode) or its
// process group / descendants (pgroup mode).
enum class notify_access_kind : std::uint8_t { all, main };
enum class probe_kind : std::uint8_t { tcp, unix_socket, http, command };
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
  bool operator==(const shutdown_spec&) const = default;
};

struct readiness_spec {
  readiness_kind kind = readiness_kind::exec;
  std::string host;                  // tcp, http (IPv6 without brackets)
  int port = 0;                      // tcp, http
  std::string path;                  // unix socket
  std::vector<std::string> command;  // command (argv)
  int start_timeout_ms = 5000;
  int probe_interval_ms = 10;  // tcp / unix / command / http: time between probes
  std::string http_path;       // http: the path of the GET ("/healthz")
  bool operator==(const readiness_spec&) const = default;
};

// A periodic check of a running child; failures in a row end it with
// liveness_failed (an abnormal exit: restarted, counted by intensity).
struct liveness_spec {
  bool enabled = false;
  probe_kind kind = probe_kind::tcp;
  std::string host;  // tcp, http (IPv6 without brackets)
  int port = 0;      // tcp, http
  std::string path;  // unix: the socket; http: the path of the GET
  std::vector<std::string> command;
  int interval_ms = 10000;   // between the starts of two probes
  int timeout_ms = 1000;     // a probe without an answer by then has failed
  int failures = 3;          // failed probes in a row that end the child
  int initial_delay_ms = 0;  // after the child is ready, before the first probe
  bool operator==(const liveness_spec&) const = default;
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
  bool operator==(const output_spec&) const = default;
};

// Opt-in delay before a restart. Intensity still counts every restart.
struct backoff_spec {
  bool enabled = false;
  int initial_ms = 100;
  int max_ms = 10000;
  double factor = 2.0;
  double jitter = 0.1;  // +-10 %
  int reset_after_ms = 10000;
  bool operator==(const backoff_spec&) const = default;
};

// One resource limit of `rlimits:` (setrlimit(2) in the child before exec).
struct rlimit_spec {
  int resource = 0;  // RLIMIT_NOFILE, ...
  rlim_t soft = 0;   // RLIM_INFINITY: unlimited
  rlim_t hard = 0;
  bool operator==(const rlimit_spec&) const = default;
};

// Resource limits of a worker (`limits:`), enforced through its cgroups
// (docs/CONTAINMENT.md). 0: no limit. Each `at_*` is where the key was
// written ("FILE:LINE:COL: KEY.PATH"), for the error when no cgroup
// controller can enforce it (otpd --check, and at start).
struct limits_spec {
  std::uint64_t memory_bytes = 0;
  double cpu_cores = 0;
  std::uint64_t pids = 0;
  std::string at_memory, at_cpu, at_pids;
  [[nodiscard]] bool any() const { return memory_bytes != 0 || cpu_cores != 0 || pids != 0; }
  bool operator==(const limits_spec&) const = default;
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

  // Limits and identity (docs/CONTAINMENT.md), applied in the child before
  // the switch to uid/gid (rlimits, nice, oom_score_adj, umask) or after it
  // (capabilities, no_new_privileges).
  std::vector<rlimit_spec> rlimits;
  std::optional<mode_t> umask;
  std::optional<int> nice;           // -20..19
  std::optional<int> oom_score_adj;  // -1000..1000
  // KEY=VALUE lines merged under env, read again at every start (absolute:
  // resolved against the config's directory); empty: none.
  std::string env_file;
  // `user:` as written; with it, the child also gets that user's
  // supplementary groups and HOME, USER, LOGNAME and SHELL (unless env sets
  // them), looked up at every start.
  std::string user;
  std::uint64_t capabilities = 0;  // ambient capabilities: bit n is capability n
  bool no_new_privileges = false;
  limits_spec limits;
  liveness_spec liveness;
  // sd_notify from the child (docs/ARCHITECTURE.md "sd_notify from
  // children"): its watchdog (systemd's WatchdogSec=; 0: none), in µs, and
  // who may speak for it (notify_access; unset: all).
  std::uint64_t watchdog_usec = 0;
  std::optional<notify_access_kind> notify_access;
  // Whether the child gets NOTIFY_SOCKET: readiness sd_notify, a watchdog,
  // or notify_access given (then STATUS= and the rest are heard).
  [[nodiscard]] bool speaks_sd_notify() const {
    return readiness.kind == readiness_kind::sd_notify || watchdog_usec != 0 ||
           notify_access.has_value();
  }
  bool operator==(const worker_spec&) const = default;
};

// An immutable value that copies share: reads go through -> and *, a
// change through edit() (which copies it first when it is shared). A
// default one shares a single empty T. child_spec::worker is one, so the
// 10,000 children of a generated list or of `instances:` hold one
// worker_spec between them, not 888 bytes and their strings each.
template <class T>
class shared_value {
 public:
  shared_value() : p_(empty()) {}
  shared_value(T v) : p_(std::make_shared<T>(std::move(v))) {}  // NOLINT: implicit by design
  shared_value(std::shared_ptr<T> p) : p_(std::move(p)) {}      // NOLINT: shares p

  [[nodiscard]] const T& operator*() const noexcept { return *p_; }
  [[nodiscard]] const T* operator->() const noexcept { return p_.get(); }
  [[nodiscard]] const T& get() const noexcept { return *p_; }
  // Whether two values are the same object (not only equal).
  [[nodiscard]] bool shares_with(const shared_value& o) const noexcept { return p_ == o.p_; }
  T& edit() {
    if (p_.use_count() != 1) {
      p_ = std::make_shared<T>(*p_);
    }
    return *p_;
  }

 private:
  static const std::shared_ptr<T>& empty() {
    static const std::shared_ptr<T> e = std::make_shared<T>();
    return e;
  }
  std::shared_ptr<T> p_;
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
  // When !is_supervisor. Children whose workers are equal share one (the
  // loader interns them): read it with ->, change it with worker.edit().
  shared_value<worker_spec> worker;
  supervisor_spec sup;  // when is_supervisor
  // The YAML of this child (without nested children): reload compares these
  // to tell a changed child from an untouched one.
  std::string fingerprint;
  // One of the children that `instances: N` made: the id it was written
  // with, and its number (0 .. N-1); -1 otherwise.
  std::string instance_of;
  int instance = -1;
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
inline constexpr std::array<std::string_view, 30> worker{"id",
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
                                                         "stop_as_group",
                                                         "instances",
                                                         "rlimits",
                                                         "umask",
                                                         "nice",
                                                         "oom_score_adj",
                                                         "env_file",
                                                         "no_new_privileges",
                                                         "capabilities",
                                                         "limits",
                                                         "liveness",
                                                         "watchdog_sec",
                                                         "notify_access"};
// stdout / stderr given as a mapping.
inline constexpr std::array<std::string_view, 6> output{"file",   "max_size",   "keep",
                                                        "rotate", "timestamps", "to"};
// readiness given as a mapping.
inline constexpr std::array<std::string_view, 5> readiness{"tcp", "unix", "command", "interval",
                                                           "http"};
// liveness (a mapping).
inline constexpr std::array<std::string_view, 8> liveness{
    "tcp", "unix", "http", "command", "interval", "timeout", "failures", "initial_delay"};
inline constexpr std::array<std::string_view, 5> backoff{"initial", "max", "factor", "jitter",
                                                         "reset_after"};
// A worker's rlimits (each: a number, "unlimited", or [soft, hard]).
inline constexpr std::array<std::string_view, 14> rlimits{
    "nofile", "core", "nproc",    "as",   "memlock", "stack",      "cpu",
    "fsize",  "data", "msgqueue", "nice", "rtprio",  "sigpending", "locks"};
// a worker's limits.
inline constexpr std::array<std::string_view, 3> limits{"memory", "cpu", "pids"};
}  // namespace config_keys

// What the loader accepts at most (docs/SECURITY.md): a config is read by a
// root daemon, so a bad one must end in an error, never in memory exhaustion.
namespace config_limits {
// Room for the 10,000 children otpd is built for (some 140 bytes and 11
// YAML nodes each in a plain list, several times that with env, probes and
// limits), while a parse stays some hundreds of MB at worst.
inline constexpr std::size_t document_bytes = 8u << 20;  // 8 MiB of YAML
// YAML nodes walked, each use of an alias counting its whole node again.
inline constexpr std::size_t max_nodes = 1000000;
inline constexpr int max_depth = 64;                     // nesting of mappings and lists
inline constexpr std::uint64_t size_bytes = 1ull << 50;  // a size value (max_size ...)
inline constexpr std::size_t name_chars = 64;            // an id, a name, node.name
inline constexpr int max_instances = 1000;               // instances: on one worker
}  // namespace config_limits

struct config {
  std::string path;  // the file it came from
  node_spec node;
  child_spec root;  // is_supervisor, id "root"
};

// The keys of a child's own config (not its children) whose values differ
// between a and b, or that only one of them has, in file order.
[[nodiscard]] std::vector<std::string> changed_keys(const child_spec& a, const child_spec& b);
// An env_file: KEY=VALUE lines; blank lines and lines starting with '#'
// are skipped, `export ` before a key is allowed, a value may be in single
// quotes (taken as is) or double quotes (with \\ \" \$ \` \n \t escapes).
// Errors: errc::invalid_argument (a malformed line: "FILE:LINE: what") or
// the errno of the read (ENOENT...; message "FILE: ...").
[[nodiscard]] core::Result<env_list> read_env_file(const std::string& path);
[[nodiscard]] core::Result<env_list> parse_env_file(std::string_view text, const std::string& file);

// The capability a name stands for ("CAP_NET_BIND_SERVICE", also without
// CAP_ and in any case); -1 when unknown.
[[nodiscard]] int capability_from_name(std::string_view name);
[[nodiscard]] std::string capability_name(int cap);

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

#pragma once

// The control protocol of otpd: newline-delimited JSON objects over the
// Unix socket DIR/control.sock (0600; same user or root). A client sends
// one request per line, {"cmd": "<name>", ...}, and gets one reply line per
// request, in order; after "events" with follow, or "monitor", event lines
// ({"event": ...}) arrive on the same connection between replies.
// docs/PROTOCOL.md describes every message for clients in other languages.
//
// Each request and reply is a struct with one encode (to_json) and one
// decode (from_json). Decoders take what the daemon has always accepted:
// an absent optional field gets its default; a field of the wrong type
// throws nlohmann::json::exception, which the daemon answers as a bad
// request.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <otpd/core/exit_reason.hpp>
#include <otpd/protocol/json_text.hpp>

namespace otpd::protocol {

// json (nlohmann::json) and parse_json / dump_json: json_text.hpp.

// ---- field names ---------------------------------------------------------------

namespace field {
inline constexpr const char* cmd = "cmd";
inline constexpr const char* ok = "ok";
inline constexpr const char* error = "error";
inline constexpr const char* event = "event";
inline constexpr const char* id = "id";
inline constexpr const char* pid = "pid";
inline constexpr const char* name = "name";
inline constexpr const char* path = "path";
inline constexpr const char* signal = "signal";
inline constexpr const char* supervisor = "supervisor";
inline constexpr const char* args = "args";
inline constexpr const char* follow = "follow";
inline constexpr const char* recent = "recent";
inline constexpr const char* found = "found";
inline constexpr const char* files = "files";
inline constexpr const char* stdout_path = "stdout_path";
inline constexpr const char* stderr_path = "stderr_path";
inline constexpr const char* added = "added";
inline constexpr const char* removed = "removed";
inline constexpr const char* changed = "changed";
inline constexpr const char* untouched = "untouched";
inline constexpr const char* changed_keys = "changed_keys";
inline constexpr const char* dry_run = "dry_run";
inline constexpr const char* instance_of = "instance_of";
inline constexpr const char* instance = "instance";
inline constexpr const char* reason = "reason";
inline constexpr const char* reason_kind = "reason_kind";
inline constexpr const char* reason_value = "reason_value";
inline constexpr const char* ts_ms = "ts_ms";
inline constexpr const char* time = "time";
inline constexpr const char* detail = "detail";
inline constexpr const char* state = "state";
inline constexpr const char* restarts = "restarts";
inline constexpr const char* type = "type";
inline constexpr const char* restart = "restart";
inline constexpr const char* uptime_ms = "uptime_ms";
inline constexpr const char* last_exit = "last_exit";
inline constexpr const char* strategy = "strategy";
inline constexpr const char* children = "children";
inline constexpr const char* node = "node";
inline constexpr const char* otpd_pid = "otpd_pid";
inline constexpr const char* runtime_dir = "runtime_dir";
inline constexpr const char* peer_uid = "peer_uid";
inline constexpr const char* peer_pid = "peer_pid";
inline constexpr const char* containment = "containment";
inline constexpr const char* cpu_usec = "cpu_usec";
inline constexpr const char* memory_current = "memory_current";
inline constexpr const char* memory_peak = "memory_peak";
inline constexpr const char* pids_current = "pids_current";
inline constexpr const char* next_start_wall_ms = "next_start_wall_ms";
inline constexpr const char* last_exits = "last_exits";
inline constexpr const char* wall_ms = "wall_ms";
inline constexpr const char* intensity = "intensity";
inline constexpr const char* used = "used";
inline constexpr const char* max_restarts = "max_restarts";
inline constexpr const char* max_seconds = "max_seconds";
inline constexpr const char* liveness_failures = "liveness_failures";
inline constexpr const char* liveness_threshold = "liveness_threshold";
inline constexpr const char* binary = "binary";
inline constexpr const char* reexecs = "reexecs";
inline constexpr const char* notify_status = "notify_status";
inline constexpr const char* notify_errno = "notify_errno";
}  // namespace field

// The "cmd" of a request; an object without one (a string) is malformed.
// Throws nlohmann::json::exception when "cmd" is not a string.
[[nodiscard]] std::string command_of(const json& request);

// The fields an exit reason adds to a "down" event, an exit-reason reply
// and a lifecycle event: "reason" (to_string), "reason_kind" (exit_kind as
// a number), "reason_value" (the code, signal or errno).
void put_reason(json& j, const core::exit_reason& r);
[[nodiscard]] core::exit_reason get_reason(const json& j);

// ---- requests ------------------------------------------------------------------

// The name of a request with no field but "cmd", as a template argument.
template <std::size_t N>
struct command_name {
  char text[N];
  constexpr command_name(const char (&s)[N]) {  // NOLINT: implicit by design
    for (std::size_t i = 0; i < N; ++i) {
      text[i] = s[i];
    }
  }
};

// A request with no field but "cmd": ping, reload, shutdown, reopen-logs.
template <command_name Name>
struct bare_request {
  static constexpr std::string_view cmd{Name.text};
  [[nodiscard]] json to_json() const { return json{{field::cmd, std::string(cmd)}}; }
  static bare_request from_json(const json& /*j*/) { return {}; }
};

using ping_request = bare_request<"ping">;
// Rereads the config file (as SIGHUP does); with dry_run, only says what a
// reload would do (otpctl reload --dry-run).
struct reload_request {
  static constexpr std::string_view cmd = "reload";
  bool dry_run = false;
  [[nodiscard]] json to_json() const;
  static reload_request from_json(const json& j);
};
// Stops every child in order, then otpd.
using shutdown_request = bare_request<"shutdown">;
// Reopens every captured-output log file.
using reopen_logs_request = bare_request<"reopen-logs">;

// "status" and "tree" are the same request (otpctl prints them differently).
struct status_request {
  static constexpr std::string_view cmd = "status";
  static constexpr std::string_view alias = "tree";
  bool as_tree = false;  // sent as "tree"
  [[nodiscard]] json to_json() const;
  static status_request from_json(const json& j);
};

// start, stop or restart one child by id or path.
struct child_request {
  enum class verb : std::uint8_t { start, stop, restart };
  verb what = verb::start;
  std::string id;
  [[nodiscard]] json to_json() const;
  static child_request from_json(const json& j);  // "cmd" picks the verb
  [[nodiscard]] static std::string_view cmd_of(verb v) noexcept;
};

// Signals a worker's process: "signal" is a number or a name ("TERM",
// "SIGTERM"); SIGKILL when absent.
struct kill_request {
  static constexpr std::string_view cmd = "kill";
  std::string id;
  std::variant<std::monostate, int, std::string> signal;
  [[nodiscard]] json to_json() const;
  static kill_request from_json(const json& j);
};

// A new child of a simple_one_for_one supervisor ("/" is the root).
struct start_child_request {
  static constexpr std::string_view cmd = "start-child";
  std::string supervisor;
  std::vector<std::string> args;
  [[nodiscard]] json to_json() const;
  static start_child_request from_json(const json& j);
};

struct terminate_child_request {
  static constexpr std::string_view cmd = "terminate-child";
  std::string supervisor;
  std::string id;  // id, path or pid
  [[nodiscard]] json to_json() const;
  static terminate_child_request from_json(const json& j);
};

// The recent events; with follow, every later event on this connection.
struct events_request {
  static constexpr std::string_view cmd = "events";
  bool follow = true;
  [[nodiscard]] json to_json() const;
  static events_request from_json(const json& j);
};

struct whereis_request {
  static constexpr std::string_view cmd = "whereis";
  std::string name;
  [[nodiscard]] json to_json() const;
  static whereis_request from_json(const json& j);
};

// A "down" event when the process (pid, else registered name) exits.
struct monitor_request {
  static constexpr std::string_view cmd = "monitor";
  std::optional<pid_t> pid;
  std::string name;
  [[nodiscard]] json to_json() const;
  static monitor_request from_json(const json& j);
};

struct exit_reason_request {
  static constexpr std::string_view cmd = "exit-reason";
  pid_t pid = -1;
  [[nodiscard]] json to_json() const;
  static exit_reason_request from_json(const json& j);
};

// Execs otpd's binary (or "binary") in otpd's own process, handing the
// node's state over: no worker restarts (otpctl reexec, docs/PROTOCOL.md).
struct reexec_request {
  static constexpr std::string_view cmd = "reexec";
  std::string binary;  // empty: the path otpd was started from
  [[nodiscard]] json to_json() const;
  static reexec_request from_json(const json& j);
};

// ---- replies -------------------------------------------------------------------

// Every reply has "ok"; a negative one has "error" too.
struct error_reply {
  std::string error;
  [[nodiscard]] json to_json() const;
  static error_reply from_json(const json& j);
};

// The reply of start, stop, restart, terminate-child and shutdown.
struct ok_reply {
  [[nodiscard]] json to_json() const;
  static ok_reply from_json(const json& j);
};

// Whether j is a positive reply ("ok": true).
[[nodiscard]] bool is_ok(const json& reply);

// ping (otpd's pid), kill (the pid signalled), whereis and monitor.
struct pid_reply {
  pid_t pid = -1;
  [[nodiscard]] json to_json() const;
  static pid_reply from_json(const json& j);
};

struct start_child_reply {
  std::string path;  // the new child's path
  [[nodiscard]] json to_json() const;
  static start_child_reply from_json(const json& j);
};

// The paths of the children the reload added, removed and changed (or,
// with dry_run, would), the ones it leaves alone, and what changed in each.
struct reload_reply {
  std::vector<std::string> added, removed, changed;
  std::vector<std::string> untouched;
  std::vector<std::pair<std::string, std::vector<std::string>>> changed_keys;
  bool dry_run = false;
  [[nodiscard]] json to_json() const;
  static reload_reply from_json(const json& j);
};

struct reopen_logs_reply {
  std::size_t files = 0;
  [[nodiscard]] json to_json() const;
  static reopen_logs_reply from_json(const json& j);
};

// reexec: sent just before the exec; otpd's pid stays the same.
struct reexec_reply {
  std::string binary;
  pid_t pid = -1;
  [[nodiscard]] json to_json() const;
  static reexec_reply from_json(const json& j);
};

struct exit_reason_reply {
  pid_t pid = -1;
  std::optional<core::exit_reason> reason;  // empty: no recent exit of pid ("found": false)
  [[nodiscard]] json to_json() const;
  static exit_reason_reply from_json(const json& j);
};

// One node of the supervision tree in a status reply.
// One of a child's last exits in a status reply.
struct exit_entry {
  std::int64_t wall_ms = 0;  // CLOCK_REALTIME ms
  core::exit_reason reason;
};

// A supervisor's restart intensity: restarts inside its window now, and
// the limit (more than max_restarts in max_seconds and it gives up).
struct intensity_status {
  int used = 0;
  int max_restarts = 0;
  int max_seconds = 0;
};

struct node_status {
  std::string id;
  std::string path;
  std::optional<pid_t> pid;  // null when not running (and for supervisors)
  std::string state;         // starting, running, stopping, stopped, failed
  int restarts = 0;
  bool is_supervisor = false;             // "type": "supervisor" or "worker"
  std::string restart;                    // permanent, transient, temporary
  std::optional<std::int64_t> uptime_ms;  // while running
  std::optional<std::string> last_exit;
  std::optional<std::string> name;  // registered name
  // Workers whose stdout / stderr otpd writes to a file: its path (where
  // `otpctl logs` reads it); absent for any other output.
  std::optional<std::string> stdout_path;
  std::optional<std::string> stderr_path;
  std::optional<std::string> strategy;  // supervisors only
  std::vector<node_status> children;    // supervisors only
  // A child made by `instances: N`: the id written in the config, its number.
  std::optional<std::string> instance_of;
  std::optional<int> instance;
  // A running worker's figures from its cgroups (absent where no cgroup
  // controller gives them): CPU time in microseconds, memory in bytes now
  // and at its peak, processes (and threads) now.
  std::optional<std::uint64_t> cpu_usec, memory_current, memory_peak, pids_current;
  // In state backoff: the wall-clock time (CLOCK_REALTIME ms) of the next start.
  std::optional<std::int64_t> next_start_wall_ms;
  std::vector<exit_entry> last_exits;         // oldest first, at most 10; absent when none
  std::optional<intensity_status> intensity;  // supervisors only
  // A running worker with a liveness probe: its probes failed in a row now
  // (0 after a success), and how many in a row end it (its `failures`).
  std::optional<int> liveness_failures;
  std::optional<int> liveness_threshold;
  // A running worker that speaks sd_notify: its last STATUS= and ERRNO=.
  std::optional<std::string> notify_status;
  std::optional<int> notify_errno;
  [[nodiscard]] json to_json() const;
  static node_status from_json(const json& j);
};

// The reply of status and tree: the root supervisor, plus the node's facts.
struct status_reply {
  node_status root;  // its path is "/"
  std::string node;
  pid_t otpd_pid = -1;
  std::string runtime_dir;
  std::string containment;  // "cgroup" or "pgroup" (docs/CONTAINMENT.md); empty: not said
  // The binary otpd runs from (what `otpctl reexec` execs by default), and
  // how many times this node's otpd process has been re-executed.
  std::string binary;
  std::uint64_t reexecs = 0;
  [[nodiscard]] json to_json() const;
  static status_reply from_json(const json& j);
};

// ---- events --------------------------------------------------------------------

// A lifecycle event of the tree (logged, kept in the recent ring, streamed
// to subscribers): started, ready, exited, start_failed, restarting, ...;
// and "command", the audit trail: a control command that changes something,
// with who sent it (the peer's uid and pid; absent for SIGHUP) and, in
// detail, what came of it.
struct lifecycle_event {
  std::string event;
  std::string path;
  std::int64_t ts_ms = 0;  // otpd's monotonic clock
  std::optional<pid_t> pid;
  std::optional<core::exit_reason> reason;
  std::optional<std::string> detail;
  std::optional<std::string> cmd;  // "command" events only
  std::optional<uid_t> peer_uid;
  std::optional<pid_t> peer_pid;
  // The wall clock, RFC 3339 in UTC with ms ("2026-12-02T10:01:02.345Z");
  // empty: not sent.
  std::string time;
  [[nodiscard]] json to_json() const;
  static lifecycle_event from_json(const json& j);
};

struct events_reply {
  std::vector<lifecycle_event> recent;  // oldest first
  [[nodiscard]] json to_json() const;
  static events_reply from_json(const json& j);
};

// A monitored process ended ("event": "down"); noproc when it was not ours.
struct down_event {
  static constexpr std::string_view event = "down";
  pid_t pid = -1;
  core::exit_reason reason;
  [[nodiscard]] json to_json() const;
  static down_event from_json(const json& j);
};

}  // namespace otpd::protocol

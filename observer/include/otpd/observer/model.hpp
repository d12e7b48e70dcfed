#pragma once

// The observer's model of a live supervision tree: built from a status
// reply, kept current by the lifecycle event stream, with per-child CPU and
// memory figures sampled from /proc (or taken from status, which wins when
// otpd reports cgroup figures). No I/O: status replies, events and /proc
// samples are handed in, and the clock is injected, so unit tests drive it
// all (tests/unit/observer/model_test.cpp).
//
// Events and status arrive on two connections, so an event may be read
// after a status reply that already includes it. Every event that changes a
// child is applied only when it is about the pid the model knows (or about
// no pid yet), which makes a late event harmless; events the model cannot
// apply exactly (restarts, reloads, supervisors giving up) ask for a fresh
// status instead.

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <otpd/observer/procfs.hpp>

namespace otpd::observer {

using json = nlohmann::json;

// Milliseconds from some fixed point; injected so tests drive time.
using clock_fn = std::function<std::int64_t()>;
[[nodiscard]] std::int64_t steady_ms() noexcept;  // CLOCK_MONOTONIC
[[nodiscard]] std::int64_t wall_ms() noexcept;    // CLOCK_REALTIME

// Reads one process (read_proc in production; a table in tests).
using proc_reader = std::function<std::optional<proc_sample>(pid_t)>;

// One exit of a child, as the observer saw it in the event stream.
struct exit_record {
  std::int64_t wall_ms = 0;  // when the observer received it
  std::string reason;        // as otpd wrote it ("killed", "exit 3")
  std::string kind;          // exit_kind_name(reason_kind)
  std::optional<pid_t> pid;
};

// The stable name of a reason_kind (docs/PROTOCOL.md), for metric labels:
// normal, exit_code, signal, core_dump, killed, shutdown, noproc, unknown,
// exec_failed, oom_killed, liveness_failed; "other" for a number this build does not know.
[[nodiscard]] std::string exit_kind_name(int reason_kind);

// Supervisor intensity, as status reports it (older otpds do not).
struct intensity {
  int used = 0;  // restarts within the current window
  int max_restarts = 0;
  int max_seconds = 0;
};

// One node of the tree (the root supervisor included, path "/").
struct child_view {
  std::string path;  // "/" for the root
  std::string id;
  int depth = 0;  // the root's children are at depth 0, the root at -1
  bool supervisor = false;
  std::string state;         // starting, running, stopping, stopped, failed, backoff
  std::string restart_type;  // permanent, transient, temporary
  std::string strategy;      // supervisors only
  std::string name;          // registered name, if any
  std::optional<pid_t> pid;
  int restarts = 0;
  std::optional<std::string> last_exit;
  std::optional<std::int64_t> uptime_ms;  // while running (as of the snapshot)
  // In backoff: when otpd starts it again (CLOCK_REALTIME ms, from status).
  std::optional<std::int64_t> next_start_wall_ms;
  // Resource figures: from status when it has them, else from /proc.
  std::optional<double> cpu_percent;  // over the last sampling interval; 100 = one core
  std::optional<double> cpu_seconds;  // of the current process (or its cgroup)
  std::optional<std::uint64_t> memory_bytes;
  bool figures_from_status = false;
  std::optional<intensity> intens;  // supervisors, when status reports it
  // Counted from the events since the observer started.
  std::map<std::string, std::uint64_t> exits_by_kind;
  std::uint64_t restarts_seen = 0;  // supervisors: restarting events of their children
  // newest last, bounded; seeded from status's last_exits when empty.
  std::deque<exit_record> recent_exits;
  // A child made by `instances: N` (status's instance_of and instance): the
  // id written in the config and its number; empty / absent otherwise.
  std::string instance_of;
  std::optional<int> instance;
  // A running worker with a liveness probe: failed probes in a row now and
  // how many end it (status's liveness_failures, liveness_threshold).
  std::optional<int> liveness_failures;
  std::optional<int> liveness_threshold;
};

// The children that one `instances: N` worker made, seen as one: the
// siblings (children of one supervisor) with the same instance_of. Its key
// is "<supervisor path>/<id>-*" ("web-*" under the root): never a child's
// path, as an id cannot hold '*', and it reads as the instances' pattern.
struct instance_group {
  std::string key;
  std::string id;      // the id written in the config (instance_of)
  std::string parent;  // the supervisor's path, "/" for the root
  int depth = 0;       // the depth of its instances
  // The instances, as indices into snapshot::rows, by instance number.
  std::vector<std::size_t> members;
  int total = 0;
  int running = 0;
  int restarts = 0;                           // the sum
  std::optional<double> cpu_percent;          // the sum over the instances that have one
  std::optional<std::uint64_t> memory_bytes;  // the same
  std::optional<std::int64_t> uptime_ms;      // the longest
  std::string state;                          // the worst of its instances' (state_rank)
};

// How bad a state is, for a group's worst: running 0, starting 1,
// stopping 2, backoff 3, stopped 4, failed 5 (an unknown state: 4).
[[nodiscard]] int state_rank(std::string_view state) noexcept;

// The groups of rows (tree order, as in snapshot::rows), in the order of
// their first instance; a group of one instance is a group too (the config
// said `instances: 1`).
[[nodiscard]] std::vector<instance_group> group_instances(const std::vector<child_view>& rows);

// What the model knows of otpd itself.
struct node_facts {
  std::string node;
  pid_t otpd_pid = -1;
  std::string runtime_dir;
  std::optional<std::uint64_t> rss_bytes;  // otpd's own, from /proc
  std::optional<std::uint64_t> open_fds;
  std::map<std::string, std::uint64_t> events_by_type;  // seen since the observer started
  std::uint64_t status_fetches = 0;
};

// A consistent copy of the model at one instant (what views render).
struct snapshot {
  node_facts facts;
  std::vector<child_view> rows;        // tree order: the root first, then depth-first
  std::vector<instance_group> groups;  // group_instances(rows)
  std::deque<json> recent_events;
  std::int64_t taken_at_wall_ms = 0;
};

class model {
 public:
  static constexpr std::size_t max_recent_exits = 20;
  static constexpr std::size_t max_recent_events = 256;

  explicit model(clock_fn now = steady_ms, clock_fn wall = wall_ms);

  // Replaces the tree with a status reply's (the root's fields plus node,
  // otpd_pid, runtime_dir). Keeps what only the observer knows of a path
  // that is still there: exit counts, recent exits, CPU baselines.
  // Throws nlohmann::json::exception on a reply of the wrong shape.
  void apply_status(const json& reply);

  // Applies one lifecycle event line (an object with "event"). Returns true
  // when the model needs a fresh status to be exact (restarts, reloads,
  // supervisors starting or giving up, a path it does not know). An event
  // whose fields have the wrong type is counted and otherwise ignored.
  bool apply_event(const json& ev);

  // Samples every running child's process with read, and otpd's own; CPU %
  // is the CPU time used since the previous sample of the same process
  // over the time between the two samples.
  void sample(const proc_reader& read, long ticks_per_second, long page_size);
  // otpd's own figures (read by the caller from /proc/<otpd_pid>).
  void set_otpd_figures(std::optional<std::uint64_t> rss_bytes,
                        std::optional<std::uint64_t> open_fds);

  [[nodiscard]] snapshot snap() const;
  [[nodiscard]] const node_facts& facts() const { return facts_; }
  [[nodiscard]] bool has_tree() const { return !rows_.empty(); }
  // The pids of running workers (for sampling and tests).
  [[nodiscard]] std::vector<std::pair<std::string, pid_t>> running_pids() const;
  // The ts_ms of the newest event applied (to skip the ring's replay on a
  // new subscription).
  [[nodiscard]] std::optional<std::int64_t> last_event_ts() const { return last_event_ts_; }

 private:
  struct row {
    child_view v;
    std::optional<std::int64_t> running_since;  // local clock, while running
    // The previous CPU reading of the current process.
    std::optional<pid_t> sampled_pid;
    std::uint64_t sampled_start = 0;
    double sampled_cpu_s = 0;
    std::int64_t sampled_at = 0;
    bool has_baseline = false;
  };
  row* find(const std::string& path);
  void add_rows(const json& node, int depth, std::map<std::string, row>& old);
  void record_exit(row& r, const json& ev, bool failed_start);
  void take_status_figures(row& r, const json& node);

  clock_fn now_;
  clock_fn wall_;
  std::vector<row> rows_;
  std::map<std::string, std::size_t> index_;
  node_facts facts_;
  std::deque<json> recent_events_;
  std::optional<std::int64_t> last_event_ts_;
};

// Uptime for humans: 4.2s, 3m07s, 5h02m, 3d04h; "-" when absent.
[[nodiscard]] std::string format_uptime(std::optional<std::int64_t> ms);
// Bytes for humans: 812K, 14.2M, 1.1G; "-" when absent.
[[nodiscard]] std::string format_bytes(std::optional<std::uint64_t> bytes);

}  // namespace otpd::observer

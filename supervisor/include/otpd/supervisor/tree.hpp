#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/result.hpp>
#include <otpd/supervisor/config.hpp>

namespace otpd::supervisor {

// backoff: down, its restart waits for the backoff delay (node::next_start_ms).
enum class child_state : std::uint8_t { starting, running, stopping, stopped, failed, backoff };
[[nodiscard]] const char* to_string(child_state s) noexcept;

// A lifecycle event, logged and streamed to subscribers.
struct event {
  std::string type;  // started, ready, exited, start_failed, restarting, intensity_exceeded,
                     // supervisor_started, supervisor_stopped, reload_applied, ...
  std::string path;
  pid_t pid = -1;
  bool has_reason = false;
  core::exit_reason reason;
  std::string detail;
};

// What the tree asks its owner (the daemon, or a test) to do. The tree never
// does I/O itself: it is driven by the on_* calls and by its clock.
struct action {
  enum class kind : std::uint8_t {
    spawn,     // start the worker `uid`; answer with on_spawned, then on_ready or on_exit
    stop,      // stop the worker `uid` by its shutdown policy; answer with on_exit
    schedule,  // call on_timer(uid) after delay_ms (restart backoff)
    notify,    // an event to log and stream
    exit_node  // the root supervisor has ended: exit with exit_code
  };
  kind k = kind::notify;
  std::uint64_t uid = 0;
  int delay_ms = 0;
  int exit_code = 0;
  // stop: SIGKILL at once, whatever the worker's shutdown policy (its
  // supervisor was killed); a stop under way is cut short.
  bool brutal = false;
  event ev;
};

struct node;

// One step of a supervisor's work queue. Steps run in order; a start or a
// stop waits until the child has started or stopped.
struct step {
  enum class kind : std::uint8_t { start, stop, finish_start, finish_stop, fail_start, remove };
  kind k = kind::start;
  node* target = nullptr;
};

// A FIFO of steps that allocates nothing while empty (a std::deque allocates
// a block per instance, which adds up at 10,000 children).
class step_queue {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == v_.size(); }
  [[nodiscard]] const step& front() const { return v_[head_]; }
  void push_back(const step& s) { v_.push_back(s); }
  void pop_front() {
    if (++head_ == v_.size()) {
      clear();
    }
  }
  void clear() noexcept {
    v_.clear();
    head_ = 0;
  }

 private:
  std::vector<step> v_;
  std::size_t head_ = 0;
};

// One exit of a child, kept for status (node::last_exits).
struct exit_record {
  std::int64_t wall_ms = 0;  // CLOCK_REALTIME ms when the tree heard of it
  core::exit_reason reason;
};

// killed: `otpctl kill` of a nested supervisor, as exit(Sup, kill) in OTP:
// every worker under it is SIGKILLed at once, then it ends with `killed`.
enum class sup_phase : std::uint8_t {
  idle,
  starting,
  running,
  stopping,
  giving_up,
  failing,
  killed
};

// A child of a supervisor: a worker or a nested supervisor.
struct node {
  std::uint64_t uid = 0;
  node* parent = nullptr;
  std::string id;
  std::string path;  // ids from the root joined by '/'
  std::shared_ptr<const child_spec> spec;
  bool is_supervisor = false;

  child_state state = child_state::stopped;
  pid_t pid = -1;
  int restarts = 0;
  bool ever_started = false;
  bool has_exit = false;
  core::exit_reason last_exit;
  std::int64_t started_at_ms = 0;
  bool dropped = false;          // temporary child stopped by a sibling's restart
  bool held = false;             // stopped by an operator: not restarted until started again
  bool dynamic = false;          // a simple_one_for_one child
  bool removed = false;          // to be erased once idle
  bool backoff_pending = false;  // a restart waits for its backoff timer
  int backoff_attempt = 0;
  std::int64_t next_start_ms = 0;  // while in backoff: when the timer fires (monotonic ms)
  // The last exits, oldest first, at most tree::max_last_exits: a vector,
  // not a deque (a deque allocates even while empty, at 10,000 children).
  std::vector<exit_record> last_exits;
  std::vector<std::string> extra_args;  // simple_one_for_one start-child arguments

  // Supervisors only.
  std::vector<std::unique_ptr<node>> children;
  std::vector<std::int64_t> restart_log;  // ms of each restart inside the window
  step_queue steps;
  node* waiting = nullptr;
  bool in_process = false;
  sup_phase phase = sup_phase::idle;
  std::uint64_t dynamic_counter = 0;
  std::string give_up_cause;  // "child X exited: reason"

  [[nodiscard]] const worker_spec& worker() const { return *spec->worker; }
  [[nodiscard]] const supervisor_spec& sup() const { return spec->sup; }
};

struct reload_summary {
  std::vector<std::string> added, removed, changed;
  // Filled by plan_reload: children kept as they are, and for each changed
  // path the keys of its config that differ ("command", "env"...).
  std::vector<std::string> untouched;
  std::vector<std::pair<std::string, std::vector<std::string>>> changed_keys;
};

// One node's state as `otpctl reexec` hands it to the next otpd binary
// (tree::snapshot, tree::adopt): everything the tree knows of it but its
// uid and its spec, which the new process rebuilds from the config. Times
// are CLOCK_MONOTONIC ms (the clock survives execve), wall times CLOCK_REALTIME.
struct node_snapshot {
  std::string path;  // "" for the root
  std::string id;
  bool is_supervisor = false;
  child_state state = child_state::stopped;
  pid_t pid = -1;
  int restarts = 0;
  bool ever_started = false;
  bool has_exit = false;
  core::exit_reason last_exit;
  std::vector<exit_record> last_exits;
  std::int64_t started_at_ms = 0;
  bool dropped = false;
  bool held = false;
  bool dynamic = false;
  std::vector<std::string> extra_args;
  bool backoff_pending = false;
  int backoff_attempt = 0;
  std::int64_t next_start_ms = 0;
  // Supervisors only.
  sup_phase phase = sup_phase::idle;
  std::vector<std::int64_t> restart_log;
  std::uint64_t dynamic_counter = 0;
  std::string give_up_cause;
};

// What tree::adopt could not take over as it was.
struct adopt_summary {
  // Snapshot paths the config no longer has (or whose kind changed), and
  // the pids they still ran: the owner ends those processes.
  std::vector<std::string> unknown;
  std::vector<pid_t> orphans;
  // Children of the config the snapshot did not have: started as a reload
  // would start an added child.
  std::vector<std::string> fresh;
};

// The supervision tree of one node as a state machine with no I/O: every
// OTP rule (strategies, restart types, intensity in a sliding window of exact
// milliseconds, start order, reverse stop order, escalation) lives here.
class tree {
 public:
  using clock_fn = std::function<std::int64_t()>;  // monotonic milliseconds
  static constexpr std::size_t max_last_exits = 10;

  // wall: CLOCK_REALTIME milliseconds, only to stamp exits (last_exits);
  // empty: the system's.
  tree(std::shared_ptr<const config> cfg, clock_fn now, std::uint64_t seed = 1, clock_fn wall = {});
  tree(const tree&) = delete;
  tree& operator=(const tree&) = delete;
  tree(tree&&) = delete;
  tree& operator=(tree&&) = delete;
  ~tree();

  // Children an operator stopped before otpd last ended (kept in the
  // runtime dir): they stay stopped at their first start, until started
  // again. Call before start(); unknown paths are ignored.
  void hold_at_start(const std::vector<std::string>& paths);
  // Children held by an operator now (stop_child), in start order.
  [[nodiscard]] std::vector<std::string> held_paths() const;
  // Starts the root supervisor (its children in order).
  void start();
  // Why the tree cannot be handed over exactly now ("" when it can): a
  // child starting or stopping, a supervisor with queued work, the node
  // stopping. The message names the path ("busy: a/b is starting").
  [[nodiscard]] std::string busy() const;
  // Every node's state, parents before their children, in start order.
  [[nodiscard]] std::vector<node_snapshot> snapshot() const;
  // Instead of start(): takes over the state of a tree that ran in the
  // previous otpd process (otpctl reexec). No worker is spawned: running
  // children keep their pid, held ones stay held, backoff restarts are
  // scheduled again for the time left, intensity windows are kept. Only on
  // a tree that has never started; an error otherwise, or without a root.
  core::Result<adopt_summary> adopt(const std::vector<node_snapshot>& nodes);
  // Orderly stop of everything, in reverse order; ends with exit_node(0).
  void shutdown();

  // Events from the owner.
  void on_spawned(std::uint64_t uid, pid_t pid);
  void on_ready(std::uint64_t uid);
  // The worker's process is gone (reaped), or could not be started at all.
  void on_exit(std::uint64_t uid, core::exit_reason reason);
  void on_timer(std::uint64_t uid);

  // Operator commands. `who` is a path or a unique id.
  // Errors carry a message for the operator (Result::message()).
  core::Result<void> stop_child(const std::string& who);
  core::Result<void> start_child(const std::string& who);
  core::Result<void> restart_child(const std::string& who);
  // Kills a nested supervisor like exit(Sup, kill) in OTP: every worker
  // under it gets SIGKILL at once (a stop action with `brutal`) and ends
  // with `killed`, nested supervisors too; then it ends with `killed` itself
  // and its parent's strategy, restart type and intensity decide what
  // follows. Not the root (that is a shutdown), nor a supervisor that is
  // not running.
  core::Result<void> kill_supervisor(const std::string& who);
  // simple_one_for_one: a new child from the template with extra arguments.
  core::Result<std::string> start_dynamic(const std::string& sup,
                                          const std::vector<std::string>& args);
  core::Result<void> terminate_dynamic(const std::string& sup, const std::string& who);
  // Applies a new config like `supervisorctl update`.
  reload_summary reload(std::shared_ptr<const config> cfg);
  // What reload(cfg) would add, remove and change, without touching
  // anything (`otpctl reload --dry-run`, like `supervisorctl reread`).
  [[nodiscard]] reload_summary plan_reload(const config& cfg) const;

  [[nodiscard]] std::vector<action> take_actions();
  [[nodiscard]] bool has_actions() const { return !actions_.empty(); }

  [[nodiscard]] node* find(std::uint64_t uid) const;
  // A path ("a/b") or an id that names exactly one child; errc::not_found
  // (no such child, or an ambiguous id) with a message otherwise.
  [[nodiscard]] core::Result<node*> resolve(const std::string& who) const;
  [[nodiscard]] const node& root() const { return *root_; }
  [[nodiscard]] const config& cfg() const { return *cfg_; }
  [[nodiscard]] bool stopping() const { return shutting_down_; }
  // Calls fn for every node, depth first in start order.
  void for_each(const std::function<void(const node&)>& fn) const;
  // A supervisor's restarts inside its current intensity window (as of now):
  // how close it is to giving up.
  [[nodiscard]] int restarts_in_window(const node& sup) const;
  [[nodiscard]] std::int64_t now_ms() const { return now_(); }

 private:
  [[nodiscard]] core::Result<node*> resolve_supervisor(const std::string& who) const;
  [[nodiscard]] core::Result<node*> resolve_startable(const std::string& who) const;
  node* add_node(node* parent, std::shared_ptr<const child_spec> spec, std::size_t pos);
  void erase_node(node* n);
  void build_children(node& sup);
  void emit(event ev);
  void process(node& sup);
  void step_done(node& sup, node* child);
  void begin_start(node& child);
  void begin_stop(node& child);
  void child_exited(node& sup, node& child, const core::exit_reason& reason);
  void start_failed(node& sup, node& child, const core::exit_reason& reason);
  void supervisor_ended(node& sup, const core::exit_reason& reason);
  void give_up(node& sup, const std::string& cause);
  void kill_subtree(node& sup);
  bool add_restart(node& sup);
  void enqueue_restart(node& sup, node& child);
  void enqueue_stop_all(node& sup);
  void reset_subtree(node& sup);
  void reload_sup(node& sup, const child_spec& spec, reload_summary& out);
  void record_exit(node& n, const core::exit_reason& reason);
  void cancel_backoff(node& n);
  void collect(node& n);
  [[nodiscard]] bool is_normal_for(const node& child, const core::exit_reason& reason) const;

  std::shared_ptr<const config> cfg_;
  clock_fn now_;
  clock_fn wall_;
  std::minstd_rand rng_;
  std::unique_ptr<node> root_;
  std::unordered_map<std::uint64_t, node*> by_uid_;
  std::uint64_t next_uid_ = 1;
  std::vector<action> actions_;
  bool shutting_down_ = false;
  std::unordered_set<std::string> initial_holds_;  // hold_at_start, until used
};

}  // namespace otpd::supervisor

#pragma once

// The daemon's state, shared by its units (see the overview at the top of
// daemon.cpp). Private to otpd_supervisor: run_daemon() is the interface.

#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cgroup.hpp"
#include "control_server.hpp"
#include "limits.hpp"
#include "notify_socket.hpp"
#include "output_capture.hpp"
#include "probe.hpp"
#include "service_manager.hpp"
#include <nlohmann/json.hpp>

#include <otpd/core/clock.hpp>
#include <otpd/core/exit_reason.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/protocol/control.hpp>
#include <otpd/supervisor/config.hpp>
#include <otpd/supervisor/control_handler.hpp>
#include <otpd/supervisor/daemon.hpp>
#include <otpd/supervisor/tree.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::supervisor::detail {

using json = nlohmann::json;

inline std::int64_t now_ms() {
  return core::monotonic_ns() / 1000000;
}

inline std::int64_t wall_now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

inline control_limits control_limits_of(const config& c) {
  return {static_cast<std::size_t>(c.node.control.max_connections),
          static_cast<std::int64_t>(c.node.control.idle_timeout_s) * 1000};
}

// A child process of otpd: a worker, or a probe command (readiness or
// liveness) run for one.
struct proc {
  enum class role : std::uint8_t { worker, probe };
  role r = role::worker;
  pid_t pid = -1;
  std::uint64_t uid = 0;  // the worker (for a probe: the worker it checks)
  std::string path;
  std::string name;
  bool ready = false;
  bool stopping = false;     // a stop ordered by its supervisor or an operator
  bool stop_killed = false;  // ... that had to end in SIGKILL (brutal_kill, timeout)
  bool start_failed = false;
  bool liveness = false;  // a probe: a liveness command, not a readiness one
  core::exit_reason fail_reason;
  // The error pipe of core::spawn_start until the exec outcome is known:
  // EOF means exec happened, 4 bytes an errno (a failed start).
  core::unique_fd exec_fd;  // before exec_poll: the poll closes first
  uv::handle<uv_poll_t> exec_poll;
  core::unique_fd ready_fd;  // before ready_poll: the poll closes first
  uv::handle<uv_poll_t> ready_poll;
  uv::handle<uv_timer_t> timer;        // start timeout, then the shutdown timeout
  uv::handle<uv_timer_t> probe_timer;  // readiness probes
  net_probe ready_probe;               // a tcp / unix / http readiness probe under way
  pid_t probe_pid = -1;
  // Liveness (liveness.cpp), from readiness until the worker stops.
  uv::handle<uv_timer_t> live_timer;      // the next probe
  uv::handle<uv_timer_t> live_cmd_timer;  // the timeout of a liveness command
  net_probe live_probe;                   // a tcp / unix / http liveness probe under way
  pid_t live_probe_pid = -1;              // a liveness command under way
  int live_failures = 0;                  // failed in a row
  // Ended by otpd for failing its liveness probe: not an ordered stop, its
  // reason is liveness_failed (value: the last signal sent).
  bool liveness_killed = false;
  int liveness_signal = 0;
  std::string cgroup;  // its cgroup directory (cgroup mode)
  // Its cgroup v1 directories (limits on a hybrid host). Out of line: most
  // workers have none, and inline they cost 128 bytes each at 10,000.
  std::unique_ptr<v1_dirs> v1_dirs_;
  [[nodiscard]] const v1_dirs& v1() const {
    static const v1_dirs none;
    return v1_dirs_ ? *v1_dirs_ : none;
  }
  void set_v1(v1_dirs d) { v1_dirs_ = d.any() ? std::make_unique<v1_dirs>(std::move(d)) : nullptr; }
  // The OOM kills of its memory cgroup at the spawn (a memory limit only).
  std::optional<std::uint64_t> oom_kills;
  // A stop with stop_as_group in cgroup mode: what is left in the cgroup
  // when the worker's own process exits gets the rest of the shutdown
  // timeout to exit too (then cgroup.kill), instead of being killed at once.
  bool group_finishes = false;
  // pgroup mode: pidfds of the descendants found when the stop began, killed
  // when the worker is reaped (a pidfd cannot hit a reused pid).
  std::vector<core::unique_fd> family;
  // sd_notify from the child (notify_children.cpp).
  std::string notify_status;        // its last STATUS=, cleaned
  std::optional<int> notify_errno;  // its last ERRNO=
  std::uint64_t watchdog_usec = 0;  // its watchdog now (watchdog_sec, WATCHDOG_USEC=); 0: none
  uv::handle<uv_timer_t> watchdog_timer;  // from readiness on: restarted by WATCHDOG=1
  std::int64_t start_deadline_ms = 0;     // where the start timeout ends (EXTEND_TIMEOUT_USEC)
  std::string cgroup_rel;                 // its cgroup as /proc names it, read when first needed
  bool mainpid_logged = false;

  // Stops every readiness watch (ready fd, probes, start timeout).
  void stop_readiness_watch() {
    timer.reset();
    probe_timer.reset();
    ready_probe.reset();
    ready_poll.reset();
    ready_fd.reset();
  }
  // Stops the liveness probes (a command under way is killed by the caller).
  void stop_liveness_watch() {
    live_timer.reset();
    live_cmd_timer.reset();
    live_probe.reset();
  }
};

class node_daemon : private control_executor {
 public:
  node_daemon(daemon_options opts, std::shared_ptr<const config> cfg)
      : opts_(std::move(opts)), cfg_(std::move(cfg)) {}
  node_daemon(const node_daemon&) = delete;
  node_daemon& operator=(const node_daemon&) = delete;
  node_daemon(node_daemon&&) = delete;
  node_daemon& operator=(node_daemon&&) = delete;
  ~node_daemon() override = default;

  // Sets up, runs the loop until the node stops, tears down: the exit code.
  int run();

 private:
  // The daemon of a handle's loop (loop_.data).
  static node_daemon& self(uv_handle_t* h) { return *static_cast<node_daemon*>(h->loop->data); }
  template <class H>
  static node_daemon& self(H* h) {
    return self(reinterpret_cast<uv_handle_t*>(h));
  }

  // daemon.cpp: the loop, signals, the tree's actions, reaping, stopping.
  bool setup();
  void install_signals();
  void teardown();
  void drain();
  void execute(action& a);
  void schedule_timer(std::uint64_t uid, int delay_ms);
  void log_event(const event& ev);
  void stop_worker(std::uint64_t uid, bool brutal = false);
  void on_shutdown_timeout(pid_t pid);
  void reap();
  void on_reaped(pid_t pid, const core::exit_reason& reason);
  static core::exit_reason reason_of(const proc& p, const core::exit_reason& observed);
  void on_probe_reaped(const proc& probe, const core::exit_reason& observed);
  void sweep_descendants(proc& p);
  void collect_family(proc& p);
  void kill_everything_of(const proc& p);
  // containment: cgroups (or process groups) and the wait for a cgroup to empty.
  bool setup_containment();
  std::string cgroup_for(const node& n, core::unique_fd& dir_fd, bool& via_procs);
  bool wait_until_empty(const proc& p, pid_t pid, const core::exit_reason& reason);
  void on_cgroup_events();
  void finish_exit(std::uint64_t uid, const std::string& cgroup, const v1_dirs& v1,
                   const core::exit_reason& reason);
  void on_group_timeout(int wd);

  // worker_limits.cpp: limits, OOM kills, figures (limits.hpp).
  bool setup_limits();
  bool prepare_limits(const node& n, const std::string& cgroup, core::spawn_options& o,
                      prepared_limits& out);
  core::exit_reason oom_reason(const proc& p, const core::exit_reason& reason) const;
  void put_figures(const node& n, protocol::node_status& s) const;
  void notify_monitors(pid_t pid, const core::exit_reason& observed);
  void cleanup_registry(pid_t pid, const std::string& name);
  pid_t pid_of_name(const std::string& name) const;

  // spawn_worker.cpp: from a spawn action to a watched, starting worker.
  struct child_fds;
  void spawn_worker(std::uint64_t uid);
  void retry_spawn(std::uint64_t uid, int err);
  core::Result<core::spawn_options> spawn_options_for(const node& n) const;
  core::Result<void> user_login(const worker_spec& w, env_list& env,
                                std::vector<gid_t>& groups) const;
  void prepare_child_fds(const worker_spec& w, core::spawn_options& o, child_fds& fds);
  void place_output(const output_spec& s, int target, core::spawn_options& o, child_fds& fds);
  proc& register_worker(const node& n, pid_t pid);
  void watch_exec(proc& p, core::unique_fd exec_fd);
  bool on_exec_outcome(proc& p);
  void worker_ready(proc& p);
  void worker_start_failed(proc& p, const core::exit_reason& why, const std::string& what);
  // The whole environment of n's child: otpd's, node.env, `under` (the
  // user's login variables, the env file), the worker's env, OTPD_*.
  std::vector<std::string> env_for(const node& n, bool notify, const env_list& under = {}) const;
  void rebuild_base_env();

  // readiness.cpp: when a started worker counts as ready.
  void arm_readiness(proc& p, const readiness_spec& r, core::unique_fd ready_r);
  bool watch_ready_fd(proc& p, core::unique_fd ready_r);
  void on_ready_fd(pid_t pid);
  void arm_start_timeout(proc& p, int ms);
  void on_start_timeout(pid_t pid);
  void start_probe(proc& p);
  void probe_tick(pid_t pid);
  void run_probe_command(proc& p, const node& n);
  void start_ready_probe(proc& p, const readiness_spec& r);

  // liveness.cpp: probes of a running worker; failures end it.
  void arm_liveness(proc& p);
  void liveness_tick(pid_t pid);
  void run_liveness_command(proc& p, const node& n);
  void on_liveness_command_timeout(pid_t pid);
  void on_liveness_command_reaped(const proc& probe, const core::exit_reason& observed);
  void liveness_result(pid_t pid, const probe_result& r);
  void kill_for_liveness(proc& p, const node& n, const std::string& why);
  void on_liveness_grace(pid_t pid);
  void end_liveness(proc& p);

  // Arms slot as a timer of worker pid that calls Fire(pid) after `after`
  // ms, then every `every` ms (0: once). The pid, not the proc, is what the
  // timer keeps: the worker may be gone by the time it fires.
  template <void (node_daemon::*Fire)(pid_t)>
  void arm_pid_timer(uv::handle<uv_timer_t>& slot, pid_t pid, std::uint64_t after,
                     std::uint64_t every) {
    slot = uv::handle<uv_timer_t>::make();
    uv_timer_init(&loop_, slot.get());
    slot.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(pid));
    uv_timer_start(
        slot.get(),
        [](uv_timer_t* h) {
          (self(h).*Fire)(static_cast<pid_t>(reinterpret_cast<std::intptr_t>(h->data)));
        },
        after, every);
  }

  // control_commands.cpp: what the control socket's commands do (the
  // table and the rules of every request are control_handler's).
  json ping() override;
  json status(const protocol::status_request& r) override;
  json child(const protocol::child_request& r) override;
  json kill(const protocol::kill_request& r) override;
  json start_child(const protocol::start_child_request& r) override;
  json terminate_child(const protocol::terminate_child_request& r) override;
  json reload(bool dry_run) override;
  json shutdown() override;
  json reopen_logs() override;
  json events(control_peer& p, const protocol::events_request& r) override;
  json whereis(const protocol::whereis_request& r) override;
  json monitor(control_peer& p, const protocol::monitor_request& r) override;
  json exit_reason_of(const protocol::exit_reason_request& r) override;
  json reexec(control_peer& p, const protocol::reexec_request& r) override;
  void audit(const control_peer& p, const json& request, const json& reply) override;
  void record_event(protocol::lifecycle_event e, core::log_level level, const std::string& text);
  protocol::status_reply current_status() const;
  protocol::node_status status_of(const node& n) const;

  static constexpr std::size_t exit_ring_size = 4096;
  static constexpr std::size_t recent_events_size = 256;
  static constexpr std::size_t max_monitors_per_connection = 4096;
  static constexpr std::size_t max_audit_args = 256;

  daemon_options opts_;
  std::shared_ptr<const config> cfg_;
  std::string dir_;
  uv_loop_t loop_{};
  std::unique_ptr<tree> tree_;
  std::unordered_map<pid_t, proc> procs_;
  std::unordered_map<std::uint64_t, pid_t> worker_pid_;
  output_capture output_{&loop_};
  std::map<std::string, std::string> base_env_;
  // base_env_ as KEY=VALUE without the per-child keys: most children add
  // only those, so their environment is a copy plus three entries.
  std::vector<std::string> base_list_;
  uv::handle<uv_signal_t> sig_chld_, sig_term_, sig_int_, sig_hup_;
  control_server control_{&loop_,
                          [this](control_peer& p, std::string_view line) {
                            return answer_control_request(*this, p, line);
                          },
                          [this] { drain(); }};
  std::unordered_map<pid_t, std::vector<std::uint64_t>> monitors_;
  std::deque<std::pair<pid_t, core::exit_reason>> exits_;
  std::deque<protocol::lifecycle_event> recent_events_;
  std::unordered_map<std::uint64_t, uv::handle<uv_timer_t>> backoff_timers_;
  // Spawns waiting for file descriptors (retry_spawn), by worker uid.
  std::unordered_map<std::uint64_t, uv::handle<uv_timer_t>> spawn_retry_;
  static constexpr int spawn_retry_ms = 1000;
  std::int64_t fd_warn_ms_ = -1000000;
  core::unique_fd lock_fd_;
  containment_mode containment_ = containment_mode::pgroup;
  std::optional<cgroup_root> cgroups_;
  // One inotify fd for every cgroup.events that a reaped worker's cgroup
  // waits on (no fd per child); a watch lives only until its cgroup is empty.
  core::unique_fd cg_inotify_;  // before cg_poll_: the poll closes first
  uv::handle<uv_poll_t> cg_poll_;
  struct emptying {
    std::uint64_t uid = 0;
    std::string path;
    std::string cgroup;
    v1_dirs v1;
    core::exit_reason reason;
    // stop_as_group: the rest of the shutdown timeout, then cgroup.kill.
    uv::handle<uv_timer_t> timer;
  };
  std::unordered_map<int, emptying> emptying_;  // by inotify watch descriptor
  // Cgroups written to cgroup.kill: replaced before their next spawn (see
  // cgroup_for), as clone3 CLONE_INTO_CGROUP into one kills the child.
  std::unordered_set<std::string> killed_cgroups_;
  // Limits and figures (limits.hpp): the controllers found at start.
  std::optional<limit_controllers> limits_;
  bool draining_ = false;
  int exit_code_ = -1;
  // systemd's Type=notify (service_manager.hpp); inactive without NOTIFY_SOCKET.
  service_manager sm_;
  uv::handle<uv_timer_t> sm_timer_;  // WATCHDOG=1 and STATUS= updates
  void start_service_manager();
  // held.cpp: the operator's stops, kept in the runtime dir across restarts.
  void load_holds();
  void save_holds();
  bool holds_dirty_ = false;
  std::vector<std::string> saved_holds_;
  [[nodiscard]] std::string status_line() const;

  // reexec.cpp: otpctl reexec, the old process's side (checks, the state
  // into a memfd, the exec) and the new one's (reading it, adopting it).
  [[nodiscard]] std::string reexec_refusal() const;
  void run_reexec();
  void reexec_when_flushed();
  [[nodiscard]] json handover_state(const std::vector<output_capture::handed>& captures) const;
  bool read_handover();
  void adopt_handover();
  std::optional<json> handover_;  // the new process, from setup until adopted
  std::string reexec_binary_;     // a reexec the command accepted, run after its reply
  bool reexec_pending_ = false;
  std::uint64_t reexec_peer_ = 0;        // the connection that asked: its reply goes out first
  uv::handle<uv_timer_t> reexec_timer_;  // waiting for the reply to leave
  std::int64_t reexec_deadline_ms_ = 0;
  std::uint64_t reexecs_ = 0;  // how many times this otpd process was re-executed
  // notify_children.cpp: sd_notify from children (notify_socket.hpp). The
  // socket is made when the first child that speaks it starts, and kept.
  std::unique_ptr<notify_socket> notify_;
  log_budget notify_log_{20, 10000};
  core::Result<void> ensure_notify_socket();
  void add_notify_env(const worker_spec& w, core::spawn_options& o) const;
  void on_notify(const notify_datagram& d);
  proc* notify_sender(pid_t pid, std::string& why);
  proc* notify_group_member(pid_t pid);
  proc* notify_cgroup_member(pid_t pid);
  void notify_drop(const notify_datagram& d, const std::string& why);
  void notify_note(const proc& p, const std::string& what);
  void apply_notify(proc& p, const node& n, const notify_message& m);
  void arm_watchdog(proc& p);
  void on_watchdog_timeout(pid_t pid);
  void extend_start_timeout(proc& p, std::uint64_t usec);
};

}  // namespace otpd::supervisor::detail

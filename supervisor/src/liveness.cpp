// Liveness: whether a running worker still answers. From readiness on, a
// probe (tcp, unix, http: probe.cpp; command: a process reaped by the one
// reaper) runs every `interval`, after `initial_delay`; one at a time, each
// with `timeout` to answer. `failures` failed probes in a row end the worker:
// its stop signal, a short grace, then SIGKILL to all it runs (its cgroup, or
// its process group), like a stop, but not an ordered one: it ends with
// reason liveness_failed (abnormal: restarted, counted by intensity), never
// shutdown. Each failure is an event (probe_failed), and the end too
// (liveness_failed, with the last error).
#include <signal.h>

#include <algorithm>
#include <string>

#include "node_daemon.hpp"
#include <fmt/format.h>

#include <otpd/core/log.hpp>

namespace otpd::supervisor::detail {

namespace {

// The grace between the stop signal and SIGKILL: the worker is already not
// answering, so its full shutdown timeout would only delay the restart.
constexpr int liveness_grace_ms = 1000;

probe_target target_of(const liveness_spec& l) {
  probe_target t;
  t.k = l.kind == probe_kind::unix_socket ? probe_target::kind::unix_socket
        : l.kind == probe_kind::http      ? probe_target::kind::http
                                          : probe_target::kind::tcp;
  t.host = l.host;
  t.port = l.port;
  t.path = l.path;
  return t;
}

std::string what_probes(const liveness_spec& l) {
  if (l.kind == probe_kind::command) {
    return "command " + (l.command.empty() ? std::string("?") : l.command.back());
  }
  return describe(target_of(l));
}

}  // namespace

void node_daemon::arm_liveness(proc& p) {
  node* n = tree_->find(p.uid);
  if (n == nullptr || !n->worker().liveness.enabled) {
    return;
  }
  const liveness_spec& l = n->worker().liveness;
  p.live_failures = 0;
  arm_pid_timer<&node_daemon::liveness_tick>(p.live_timer, p.pid,
                                             static_cast<std::uint64_t>(l.initial_delay_ms),
                                             static_cast<std::uint64_t>(l.interval_ms));
}

void node_daemon::liveness_tick(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return;
  }
  proc& p = it->second;
  node* n = tree_->find(p.uid);
  if (n == nullptr || !p.ready || p.stopping || p.liveness_killed) {
    return;
  }
  // The previous probe is still under way: its own timeout decides it.
  if (p.live_probe.busy() || p.live_probe_pid > 0) {
    return;
  }
  const liveness_spec& l = n->worker().liveness;
  if (l.kind == probe_kind::command) {
    run_liveness_command(p, *n);
    return;
  }
  p.live_probe = net_probe::start(&loop_, target_of(l), static_cast<std::uint64_t>(l.timeout_ms),
                                  [this, pid](const probe_result& r) { liveness_result(pid, r); });
}

// The command runs as a probe process of otpd; its exit comes through the
// reaper (on_liveness_command_reaped), its timeout kills it.
void node_daemon::run_liveness_command(proc& p, const node& n) {
  const liveness_spec& l = n.worker().liveness;
  core::spawn_options o;
  o.argv = l.command;
  o.env = env_for(n, false);
  o.inherit_env = false;
  o.fds = {{-1, 0}, {-1, 1}, {-1, 2}};
  auto s = core::spawn(o);
  if (!s) {
    liveness_result(p.pid, {false, "unable to run the command: " + s.error().message()});
    return;
  }
  s->pidfd.reset();
  proc& probe = procs_[s->pid];
  probe.r = proc::role::probe;
  probe.liveness = true;
  probe.pid = s->pid;
  probe.uid = p.uid;
  p.live_probe_pid = s->pid;  // p is still valid: unordered_map nodes are stable
  arm_pid_timer<&node_daemon::on_liveness_command_timeout>(
      p.live_cmd_timer, p.pid, static_cast<std::uint64_t>(l.timeout_ms), 0);
}

void node_daemon::on_liveness_command_timeout(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end() || it->second.live_probe_pid <= 0) {
    return;
  }
  proc& p = it->second;
  // Its whole process group: a shell's children too. The reaper collects it;
  // as live_probe_pid no longer names it, its exit is ignored then.
  ::kill(-p.live_probe_pid, SIGKILL);
  p.live_probe_pid = -1;
  p.live_cmd_timer.reset();
  liveness_result(pid, {false, "no answer in time"});
}

void node_daemon::on_liveness_command_reaped(const proc& probe, const core::exit_reason& observed) {
  auto w = worker_pid_.find(probe.uid);
  if (w == worker_pid_.end()) {
    return;
  }
  auto it = procs_.find(w->second);
  if (it == procs_.end() || it->second.live_probe_pid != probe.pid) {
    return;  // timed out already, or a probe of an earlier process
  }
  proc& p = it->second;
  p.live_probe_pid = -1;
  p.live_cmd_timer.reset();
  bool ok = observed.kind == core::exit_kind::normal;
  liveness_result(p.pid, {ok, ok ? std::string() : "command ended: " + observed.to_string()});
}

void node_daemon::liveness_result(pid_t pid, const probe_result& r) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return;
  }
  proc& p = it->second;
  node* n = tree_->find(p.uid);
  if (n == nullptr || p.stopping || p.liveness_killed) {
    return;
  }
  if (r.ok) {
    p.live_failures = 0;
    return;
  }
  const liveness_spec& l = n->worker().liveness;
  ++p.live_failures;
  std::string what = fmt::format("{}: {}", what_probes(l), r.error);
  log_event({"probe_failed",
             p.path,
             pid,
             false,
             {},
             fmt::format("liveness {}/{}: {}", p.live_failures, l.failures, what)});
  if (p.live_failures >= l.failures) {
    kill_for_liveness(p, *n,
                      fmt::format("{} liveness probe{} failed in a row, last: {}", p.live_failures,
                                  p.live_failures == 1 ? "" : "s", what));
  }
}

// Like stop_worker, without making it an ordered stop: the tree sees the
// exit of a running child, and restarts it by its restart type.
void node_daemon::kill_for_liveness(proc& p, const node& n, const std::string& why) {
  log_event({"liveness_failed", p.path, p.pid, false, {}, why});
  p.liveness_killed = true;
  end_liveness(p);
  if (containment_ == containment_mode::pgroup) {
    collect_family(p);
  }
  const shutdown_spec& s = n.worker().shutdown;
  if (s.kind == shutdown_kind::brutal_kill) {
    p.liveness_signal = SIGKILL;
    p.stop_killed = true;
    kill_everything_of(p);
    return;
  }
  p.liveness_signal = s.signal;
  ::kill(n.worker().stop_as_group ? -p.pid : p.pid, s.signal);
  int grace = s.kind == shutdown_kind::infinity ? liveness_grace_ms
                                                : std::min(s.timeout_ms, liveness_grace_ms);
  arm_pid_timer<&node_daemon::on_liveness_grace>(p.timer, p.pid, static_cast<std::uint64_t>(grace),
                                                 0);
}

void node_daemon::on_liveness_grace(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return;
  }
  core::log_warn("otpd {}: pid {} still running after the liveness grace; SIGKILL", it->second.path,
                 pid);
  it->second.stop_killed = true;
  it->second.liveness_signal = SIGKILL;
  kill_everything_of(it->second);
}

// Stops probing (the worker is stopping or gone), a command under way included.
void node_daemon::end_liveness(proc& p) {
  p.stop_liveness_watch();
  if (p.live_probe_pid > 0) {
    ::kill(-p.live_probe_pid, SIGKILL);
    p.live_probe_pid = -1;
  }
}

}  // namespace otpd::supervisor::detail

// When a started worker counts as ready, by its readiness spec:
//   exec      when exec succeeded (spawn_worker.cpp's exec outcome);
//   notify    a newline on fd 3 (OTPD_READY_FD); EOF before it is a failed start;
//   tcp/unix  a connect that succeeds, retried every probe interval;
//   http      a GET answered with a 2xx or 3xx status, retried likewise
//             (tcp, unix and http are probe.cpp's, host names resolved on
//             the loop);
//   command   a run of the readiness command that exits 0 (its exit comes
//             through the reaper: daemon.cpp's on_probe_reaped);
//   sd_notify READY=1 on otpd's notify socket (notify_children.cpp).
// Every kind but exec has a start timeout; missing it is a failed start.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "node_daemon.hpp"

#include <otpd/core/ready.hpp>

namespace otpd::supervisor::detail {

using core::unique_fd;

void node_daemon::arm_readiness(proc& p, const readiness_spec& r, unique_fd ready_r) {
  switch (r.kind) {
    case readiness_kind::exec:
      return;  // ready when the exec fd reports EOF
    case readiness_kind::sd_notify:
      // READY=1 on the notify socket (notify_children.cpp).
      arm_start_timeout(p, r.start_timeout_ms);
      return;
    case readiness_kind::notify:
      if (watch_ready_fd(p, std::move(ready_r))) {
        arm_start_timeout(p, r.start_timeout_ms);
      }
      return;
    case readiness_kind::tcp:
    case readiness_kind::unix_socket:
    case readiness_kind::command:
    case readiness_kind::http:
      arm_start_timeout(p, r.start_timeout_ms);
      start_probe(p);
      return;
  }
}

// ---- notify: a newline on the ready fd -------------------------------------------

// False when the fd cannot be watched: the start has then failed.
bool node_daemon::watch_ready_fd(proc& p, unique_fd ready_r) {
  p.ready_fd = std::move(ready_r);
  p.ready_poll = uv::handle<uv_poll_t>::make();
  if (uv_poll_init(&loop_, p.ready_poll.get(), p.ready_fd.get()) != 0) {
    p.ready_poll.discard();
    worker_start_failed(p, {core::exit_kind::unknown, 0}, "unable to watch the ready fd");
    return false;
  }
  p.ready_poll.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(p.pid));
  uv_poll_start(p.ready_poll.get(), UV_READABLE | UV_DISCONNECT, [](uv_poll_t* h, int, int) {
    self(h).on_ready_fd(static_cast<pid_t>(reinterpret_cast<std::intptr_t>(h->data)));
  });
  return true;
}

void node_daemon::on_ready_fd(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end() || it->second.ready || it->second.stopping) {
    return;
  }
  proc& p = it->second;
  char buf[64];
  ssize_t n = ::read(p.ready_fd.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    return;
  }
  if (n > 0 && core::holds_ready_line(buf, static_cast<std::size_t>(n))) {
    worker_ready(p);
  } else if (n <= 0) {
    worker_start_failed(p, {core::exit_kind::unknown, 0}, "closed its ready fd before a newline");
  }
  drain();
}

// ---- the start timeout -------------------------------------------------------------

void node_daemon::arm_start_timeout(proc& p, int ms) {
  p.start_deadline_ms = now_ms() + ms;  // EXTEND_TIMEOUT_USEC extends from here
  arm_pid_timer<&node_daemon::on_start_timeout>(p.timer, p.pid, static_cast<std::uint64_t>(ms), 0);
}

void node_daemon::on_start_timeout(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end() || it->second.ready || it->second.stopping) {
    return;
  }
  worker_start_failed(it->second, {core::exit_kind::unknown, 0},
                      "not ready within its start timeout");
}

// ---- probes: tcp, unix, http, command ----------------------------------------------

void node_daemon::start_probe(proc& p) {
  node* n = tree_->find(p.uid);
  auto every =
      static_cast<std::uint64_t>(n != nullptr ? n->worker().readiness.probe_interval_ms : 10);
  arm_pid_timer<&node_daemon::probe_tick>(p.probe_timer, p.pid, 0, every);
}

// One readiness probe: a run of the readiness command, or a network probe
// (tcp, unix, http) on the loop.
void node_daemon::probe_tick(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end() || it->second.ready || it->second.start_failed || it->second.stopping) {
    return;
  }
  proc& p = it->second;
  node* n = tree_->find(p.uid);
  if (n == nullptr) {
    return;
  }
  const readiness_spec& r = n->worker().readiness;
  if (r.kind == readiness_kind::command) {
    run_probe_command(p, *n);
  } else {
    start_ready_probe(p, r);
  }
}

// One run at a time; the reaper tells how it ended.
void node_daemon::run_probe_command(proc& p, const node& n) {
  if (p.probe_pid > 0) {
    return;  // the previous run is still going
  }
  core::spawn_options o;
  o.argv = n.worker().readiness.command;
  o.env = env_for(n, false);
  o.inherit_env = false;
  o.fds = {{-1, 0}, {-1, 1}, {-1, 2}};
  auto s = core::spawn(o);
  if (!s) {
    return;
  }
  s->pidfd.reset();
  proc& probe = procs_[s->pid];
  probe.r = proc::role::probe;
  probe.pid = s->pid;
  probe.uid = p.uid;
  p.probe_pid = s->pid;  // p is still valid: unordered_map nodes are stable
}

// One network probe at a time: a tick while one is under way leaves it be.
// Each has max(interval, 1 s) to answer (the start timeout bounds them all);
// a failure is simply tried again on a later tick.
void node_daemon::start_ready_probe(proc& p, const readiness_spec& r) {
  if (p.ready_probe.busy()) {
    return;
  }
  probe_target t;
  t.k = r.kind == readiness_kind::unix_socket ? probe_target::kind::unix_socket
        : r.kind == readiness_kind::http      ? probe_target::kind::http
                                              : probe_target::kind::tcp;
  t.host = r.host;
  t.port = r.port;
  t.path = r.kind == readiness_kind::http ? r.http_path : r.path;
  pid_t pid = p.pid;
  auto timeout = static_cast<std::uint64_t>(std::max(r.probe_interval_ms, 1000));
  p.ready_probe = net_probe::start(&loop_, t, timeout, [this, pid](const probe_result& res) {
    auto it = procs_.find(pid);
    if (!res.ok || it == procs_.end() || it->second.ready || it->second.stopping ||
        it->second.start_failed) {
      return;
    }
    worker_ready(it->second);
    drain();
  });
}

}  // namespace otpd::supervisor::detail

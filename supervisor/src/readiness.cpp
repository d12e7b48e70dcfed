// When a started worker counts as ready, by its readiness spec:
//   exec      when exec succeeded (spawn_worker.cpp's exec outcome);
//   notify    a newline on fd 3 (OTPD_READY_FD); EOF before it is a failed start;
//   tcp/unix  a connect that succeeds, retried every probe interval;
//   command   a run of the readiness command that exits 0 (its exit comes
//             through the reaper: daemon.cpp's on_probe_reaped).
// Every kind but exec has a start timeout; missing it is a failed start.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
    case readiness_kind::notify:
      if (watch_ready_fd(p, std::move(ready_r))) {
        arm_start_timeout(p, r.start_timeout_ms);
      }
      return;
    case readiness_kind::tcp:
    case readiness_kind::unix_socket:
    case readiness_kind::command:
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

// ---- probes: tcp, unix, command ----------------------------------------------------

void node_daemon::start_probe(proc& p) {
  node* n = tree_->find(p.uid);
  auto every =
      static_cast<std::uint64_t>(n != nullptr ? n->worker().readiness.probe_interval_ms : 10);
  arm_pid_timer<&node_daemon::probe_tick>(p.probe_timer, p.pid, 0, every);
}

// One readiness probe: a run of the readiness command, or a non-blocking
// connect (TCP or Unix).
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
    probe_connect(p, r);
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

// A connect started on one tick is checked on the next ones until it
// succeeds (ready) or fails (a new one on the tick after).
void node_daemon::probe_connect(proc& p, const readiness_spec& r) {
  if (p.probe_sock) {
    // A connect in progress from the previous tick.
    int err = 0;
    socklen_t len = sizeof err;
    pollfd pfd{p.probe_sock.get(), POLLOUT, 0};
    if (::poll(&pfd, 1, 0) == 1 &&
        ::getsockopt(p.probe_sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      worker_ready(p);
      drain();
      return;
    }
    if (::poll(&pfd, 1, 0) == 0) {
      return;
    }
    p.probe_sock.reset();
    return;
  }
  int rc = -1;
  if (r.kind == readiness_kind::tcp) {
    p.probe_sock.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(r.port));
    if (::inet_pton(AF_INET, r.host == "localhost" ? "127.0.0.1" : r.host.c_str(), &a.sin_addr) !=
        1) {
      p.probe_sock.reset();
      return;
    }
    rc = ::connect(p.probe_sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    p.probe_sock.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, r.path.c_str(), sizeof a.sun_path - 1);
    rc = ::connect(p.probe_sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc == 0) {
    worker_ready(p);
    drain();
    return;
  }
  if (errno != EINPROGRESS) {
    p.probe_sock.reset();
  }
}

}  // namespace otpd::supervisor::detail

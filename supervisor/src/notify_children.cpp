// sd_notify from children: what a datagram on otpd's notify socket does to
// the child it comes from (the socket and the parser: notify_socket.hpp).
//
// Who sent it is the kernel's word (SCM_CREDENTIALS), never the datagram's:
//   - the worker's own pid: that worker;
//   - with notify_access all (the default), any other process of a worker:
//     in cgroup mode a process in the worker's cgroup (or below it), as
//     /proc/<pid>/cgroup names it; in pgroup mode (or for a worker without a
//     cgroup) a process in the worker's process group or below the worker
//     in the process tree;
//   - anything else (another user's process, a child that does not speak
//     sd_notify, a probe) is dropped with a log line, rate-limited.
// A child speaks it with readiness: sd_notify, watchdog_sec or
// notify_access. What it may say:
//   READY=1               ready (readiness: sd_notify), while it is starting
//   EXTEND_TIMEOUT_USEC=  the start timeout ends no sooner than that from
//                         now (systemd's rule: never before its configured end)
//   WATCHDOG=1            its watchdog starts over (from readiness on)
//   WATCHDOG=trigger      ended now, as by a missed watchdog
//   WATCHDOG_USEC=        its watchdog interval from now on (0: none)
//   STATUS=, ERRNO=       kept, shown by status (notify_status, notify_errno)
//   STOPPING=1, RELOADING=1, MAINPID=   logged only: the worker's pid is
//                         its main pid, and it runs until it exits
// A missed watchdog or WATCHDOG=trigger ends the child like failed liveness
// probes (liveness.cpp's kill_for_liveness): reason liveness_failed, an
// abnormal exit, restarted and counted by intensity.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cgroup.hpp"
#include "node_daemon.hpp"
#include <fmt/format.h>

#include <otpd/core/log.hpp>

namespace otpd::supervisor::detail {

namespace {

// A watchdog of more than 30 days is none that anyone waits for; the cap
// keeps the ms count of the timer far from overflow.
constexpr std::uint64_t max_watchdog_usec = 30ull * 86400 * 1000000;

std::uint64_t usec_to_ms(std::uint64_t usec) {
  return std::min(usec, max_watchdog_usec) / 1000 + (usec % 1000 != 0 ? 1 : 0);
}

// The cgroup v2 path of pid ("0::" of /proc/<pid>/cgroup), "" when gone.
std::string cgroup_of(pid_t pid) {
  std::string all = read_small_file(fmt::format("/proc/{}/cgroup", pid));
  std::size_t at = 0;
  while (at < all.size()) {
    std::size_t nl = all.find('\n', at);
    std::string line = all.substr(at, nl == std::string::npos ? nl : nl - at);
    at = nl == std::string::npos ? all.size() : nl + 1;
    if (line.rfind("0::", 0) == 0) {
      return line.substr(3);
    }
  }
  return {};
}

// The parent pid and the process group of pid from /proc/<pid>/stat; false
// when it is gone.
bool stat_of(pid_t pid, pid_t& ppid, pid_t& pgrp) {
  std::string s = read_small_file(fmt::format("/proc/{}/stat", pid));
  // "pid (comm) state ppid pgrp ...": comm may hold blanks and parentheses.
  auto close = s.rfind(')');
  if (close == std::string::npos) {
    return false;
  }
  char state = 0;
  int pp = 0;
  int pg = 0;
  if (std::sscanf(s.c_str() + close + 1, " %c %d %d", &state, &pp, &pg) != 3) {
    return false;
  }
  ppid = pp;
  pgrp = pg;
  return true;
}

void set_env(std::vector<std::string>& env, std::string_view key, const std::string& value) {
  std::erase_if(env, [&](const std::string& e) {
    return e.size() > key.size() && e[key.size()] == '=' && e.compare(0, key.size(), key) == 0;
  });
  if (!value.empty()) {
    env.push_back(fmt::format("{}={}", key, value));
  }
}

}  // namespace

core::Result<void> node_daemon::ensure_notify_socket() {
  if (notify_) {
    return {};
  }
  auto s = notify_socket::open(&loop_, dir_, [this](const notify_datagram& d) { on_notify(d); });
  if (!s) {
    return s.fail();
  }
  notify_ = std::move(*s);
  core::log_info("otpd: notify socket for children at {}", notify_->address());
  return {};
}

// NOTIFY_SOCKET and the rest, over whatever env and node.env said: the
// child's protocol must reach this otpd. MANAGERPID is otpd's pid, as a
// systemd --user manager sets it: systemd-notify sends for its parent's pid
// unless that parent is the manager, so `exec systemd-notify --ready` as
// the worker itself speaks for the worker. WATCHDOG_PID is the child's own
// pid, written by the child itself after the fork (core::spawn's pid_env).
void node_daemon::add_notify_env(const worker_spec& w, core::spawn_options& o) const {
  set_env(o.env, "NOTIFY_SOCKET", notify_ ? notify_->address() : std::string());
  set_env(o.env, "MANAGERPID", std::to_string(::getpid()));
  if (w.watchdog_usec != 0) {
    set_env(o.env, "WATCHDOG_USEC", std::to_string(w.watchdog_usec));
    o.pid_env = "WATCHDOG_PID";
  } else {
    set_env(o.env, "WATCHDOG_USEC", {});
    set_env(o.env, "WATCHDOG_PID", {});
  }
}

// ---- who sent it -----------------------------------------------------------------

void node_daemon::notify_drop(const notify_datagram& d, const std::string& why) {
  std::uint64_t skipped = 0;
  if (!notify_log_.allow(now_ms(), &skipped)) {
    return;
  }
  std::string from = d.has_creds ? fmt::format("pid {} (uid {})", d.pid, d.uid)
                                 : std::string("a sender without credentials");
  core::log_warn(
      "otpd: notify socket: dropped a datagram from {}: {}{}", from, why,
      skipped != 0 ? fmt::format(" ({} more such lines left out)", skipped) : std::string());
}

// A line about what a child said, under the same budget: a child that
// repeats itself must not flood the log either.
void node_daemon::notify_note(const proc& p, const std::string& what) {
  std::uint64_t skipped = 0;
  if (!notify_log_.allow(now_ms(), &skipped)) {
    return;
  }
  core::log_info(
      "otpd {}: pid {} says {}{}", p.path, p.pid, what,
      skipped != 0 ? fmt::format(" ({} more notify lines left out)", skipped) : std::string());
}

// A process in the cgroup of a worker (or in a cgroup below it).
proc* node_daemon::notify_cgroup_member(pid_t pid) {
  std::string rel = cgroup_of(pid);
  if (rel.empty() || !cgroups_) {
    return nullptr;
  }
  // Every worker's cgroup is below this node's base directory: anything
  // else is answered without a look at each worker.
  std::string base = cgroups_->base();
  std::string base_name = base.substr(base.rfind('/'));
  if (rel.find(base_name + "/") == std::string::npos) {
    return nullptr;
  }
  for (auto& [wpid, w] : procs_) {
    if (w.r != proc::role::worker || w.cgroup.empty()) {
      continue;
    }
    if (w.cgroup_rel.empty()) {
      w.cgroup_rel = cgroup_of(wpid);
      if (w.cgroup_rel.empty()) {
        continue;  // exited: its cgroup may still hold processes, but not for long
      }
    }
    if (rel == w.cgroup_rel || (rel.size() > w.cgroup_rel.size() &&
                                rel.compare(0, w.cgroup_rel.size(), w.cgroup_rel) == 0 &&
                                rel[w.cgroup_rel.size()] == '/')) {
      return &w;
    }
  }
  return nullptr;
}

// A process in a worker's process group, or below a worker in the process
// tree (up to 64 levels): the worker leads its own group.
proc* node_daemon::notify_group_member(pid_t pid) {
  pid_t ppid = 0;
  pid_t pgrp = 0;
  if (!stat_of(pid, ppid, pgrp)) {
    return nullptr;
  }
  auto worker_at = [this](pid_t q) -> proc* {
    auto it = procs_.find(q);
    return it != procs_.end() && it->second.r == proc::role::worker ? &it->second : nullptr;
  };
  if (proc* w = worker_at(pgrp); w != nullptr) {
    return w;
  }
  pid_t self = ::getpid();
  for (int depth = 0; depth < 64 && ppid > 1 && ppid != self; ++depth) {
    if (proc* w = worker_at(ppid); w != nullptr) {
      return w;
    }
    pid_t up = 0;
    if (!stat_of(ppid, up, pgrp)) {
      return nullptr;
    }
    ppid = up;
  }
  return nullptr;
}

proc* node_daemon::notify_sender(pid_t pid, std::string& why) {
  proc* w = nullptr;
  bool is_main = false;
  if (auto it = procs_.find(pid); it != procs_.end()) {
    if (it->second.r != proc::role::worker) {
      why = fmt::format("a probe otpd runs for {}", it->second.path);
      return nullptr;
    }
    w = &it->second;
    is_main = true;
  } else {
    if (cgroups_) {
      w = notify_cgroup_member(pid);
    }
    if (w == nullptr) {
      w = notify_group_member(pid);
      // In cgroup mode a worker's processes are those in its cgroup: a
      // process group counts only for a worker that has none.
      if (w != nullptr && cgroups_ && !w->cgroup.empty()) {
        w = nullptr;
      }
    }
    if (w == nullptr) {
      why = "not a process of any child of this otpd";
      return nullptr;
    }
  }
  node* n = tree_->find(w->uid);
  if (n == nullptr || n->is_supervisor) {
    why = "its child is gone";
    return nullptr;
  }
  const worker_spec& spec = n->worker();
  if (!spec.speaks_sd_notify()) {
    why = fmt::format(
        "{} does not speak sd_notify (no readiness: sd_notify, watchdog_sec or notify_access)",
        w->path);
    return nullptr;
  }
  if (!is_main &&
      spec.notify_access.value_or(notify_access_kind::all) == notify_access_kind::main) {
    why = fmt::format("a process of {} (pid {}), whose notify_access is main", w->path, w->pid);
    return nullptr;
  }
  return w;
}

// ---- what it says ----------------------------------------------------------------

void node_daemon::on_notify(const notify_datagram& d) {
  if (!d.has_creds || d.pid <= 0) {
    notify_drop(d, "no sender pid (outside otpd's pid namespace)");
    return;
  }
  std::string why;
  proc* p = notify_sender(d.pid, why);
  if (p == nullptr) {
    notify_drop(d, why);
    return;
  }
  if (d.oversized) {
    notify_drop(d, fmt::format("for {}: larger than {} bytes", p->path, notify_max_datagram));
    return;
  }
  auto m = parse_notify(d.data);
  if (!m) {
    notify_drop(d, fmt::format("for {}: malformed: {}", p->path, m.message()));
    return;
  }
  node* n = tree_->find(p->uid);
  if (n == nullptr) {
    return;
  }
  apply_notify(*p, *n, *m);
  drain();
}

void node_daemon::apply_notify(proc& p, const node& n, const notify_message& m) {
  const worker_spec& w = n.worker();
  bool starting = !p.ready && !p.stopping && !p.start_failed && !p.liveness_killed;
  for (const auto& b : m.bad) {
    notify_note(p, fmt::format("{} (not a value otpd takes; ignored)", b));
  }
  if (m.status) {
    if (*m.status != p.notify_status) {
      core::log_debug("otpd {}: STATUS={}", p.path, *m.status);
    }
    p.notify_status = *m.status;
  }
  if (m.errno_value) {
    p.notify_errno = *m.errno_value;
    notify_note(p, fmt::format("ERRNO={} ({})", *m.errno_value, std::strerror(*m.errno_value)));
  }
  if (m.mainpid && !p.mainpid_logged) {
    p.mainpid_logged = true;
    notify_note(p, fmt::format("MAINPID={}: ignored, the worker's pid {} is its main pid",
                               *m.mainpid, p.pid));
  }
  if (m.reloading) {
    notify_note(p, "RELOADING=1 (it is reloading; still running)");
  }
  if (m.stopping) {
    notify_note(p, "STOPPING=1 (it is stopping; running until it exits)");
  }
  if (m.watchdog_usec) {
    p.watchdog_usec = std::min(*m.watchdog_usec, max_watchdog_usec);
    notify_note(p, p.watchdog_usec == 0
                       ? std::string("WATCHDOG_USEC=0: its watchdog is off")
                       : fmt::format("WATCHDOG_USEC={}: its watchdog is now {:.3f} s",
                                     *m.watchdog_usec, static_cast<double>(p.watchdog_usec) / 1e6));
    if (p.ready && !p.stopping && !p.liveness_killed) {
      arm_watchdog(p);  // the new interval counts from now
    }
  }
  if (m.extend_timeout_usec && starting && w.readiness.kind != readiness_kind::exec) {
    extend_start_timeout(p, *m.extend_timeout_usec);
  }
  if (m.ready) {
    if (starting && w.readiness.kind == readiness_kind::sd_notify) {
      core::log_debug("otpd {}: READY=1 from pid {}", p.path, p.pid);
      worker_ready(p);
    } else if (!p.ready && w.readiness.kind != readiness_kind::sd_notify) {
      notify_note(p, "READY=1 (ignored: its readiness is not sd_notify)");
    }
  }
  if (m.watchdog_ping && p.ready && p.watchdog_timer) {
    uv_timer_again(p.watchdog_timer.get());
  }
  if (m.watchdog_trigger && !p.stopping && !p.liveness_killed && !p.start_failed) {
    if (!p.ready) {
      p.stop_readiness_watch();
    }
    kill_for_liveness(p, n, "watchdog: the child sent WATCHDOG=trigger");
  }
}

// ---- the watchdog and the start timeout -----------------------------------------

// From readiness on (and when WATCHDOG_USEC= changes it): one WATCHDOG=1 per
// interval; each restarts the timer (uv_timer_again: its repeat is the interval).
void node_daemon::arm_watchdog(proc& p) {
  if (p.watchdog_usec == 0) {
    p.watchdog_timer.reset();
    return;
  }
  std::uint64_t ms = usec_to_ms(p.watchdog_usec);
  arm_pid_timer<&node_daemon::on_watchdog_timeout>(p.watchdog_timer, p.pid, ms, ms);
}

void node_daemon::on_watchdog_timeout(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    return;
  }
  proc& p = it->second;
  p.watchdog_timer.reset();
  node* n = tree_->find(p.uid);
  if (n == nullptr || !p.ready || p.stopping || p.liveness_killed || p.watchdog_usec == 0) {
    return;
  }
  kill_for_liveness(p, *n,
                    fmt::format("watchdog: no WATCHDOG=1 within {:.3f} s",
                                static_cast<double>(p.watchdog_usec) / 1e6));
  drain();
}

// systemd's EXTEND_TIMEOUT_USEC: the start must go on within usec from now,
// but never ends before the configured start timeout would have.
void node_daemon::extend_start_timeout(proc& p, std::uint64_t usec) {
  std::int64_t now = now_ms();
  auto want = now + static_cast<std::int64_t>(usec_to_ms(usec));
  std::int64_t at = std::max(p.start_deadline_ms, want);
  core::log_debug("otpd {}: EXTEND_TIMEOUT_USEC={}: the start timeout ends in {} ms", p.path, usec,
                  at - now);
  arm_pid_timer<&node_daemon::on_start_timeout>(p.timer, p.pid,
                                                static_cast<std::uint64_t>(at - now), 0);
}

}  // namespace otpd::supervisor::detail

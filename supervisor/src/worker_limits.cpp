// A worker's limits in the daemon: the controllers found at start (and the
// refusal of limits none can enforce), the cgroups of a spawn, the OOM
// killer's reason, the figures of status. The cgroup files are limits.cpp's.
#include <signal.h>

#include <chrono>
#include <string>

#include "node_daemon.hpp"

#include <otpd/core/log.hpp>

namespace otpd::supervisor::detail {

using core::exit_reason;

// After setup_containment: the controllers otpd can use, leftovers of a dead
// otpd in the v1 hierarchies, and the config's limits checked against them
// (a limit nothing can enforce fails the start, naming file, line and key).
bool node_daemon::setup_limits() {
  limits_ = limit_controllers::open(cgroups_ ? cgroups_->base() : std::string(), dir_,
                                    opts_.containment != containment_choice::pgroup);
  // After a reexec the limit cgroups hold our running workers: not leftovers.
  using leftovers = std::vector<std::pair<std::string, std::vector<pid_t>>>;
  for (const auto& [dir, pids] :
       handover_ ? leftovers()
                 : limits_->clean_leftovers(core::deadline::after(std::chrono::seconds(5)))) {
    std::string list;
    for (pid_t p : pids) {
      list += (list.empty() ? "" : " ") + std::to_string(p);
    }
    core::log_warn("otpd: killed what a previous otpd left in {}: pids {}", dir, list);
  }
  if (std::string why = limits_->check(*cfg_); !why.empty()) {
    core::log_error("{}; exiting", why);
    return false;
  }
  return true;
}

// The limits of n into its cgroups before a spawn, and the v1 cgroups for
// the child to join (their fds in o.join_fds, owned by `out` until the
// spawn is done). False (logged) when they cannot be set: the start fails.
bool node_daemon::prepare_limits(const node& n, const std::string& cgroup, core::spawn_options& o,
                                 prepared_limits& out) {
  const limits_spec& l = n.worker().limits;
  if (!limits_) {
    return true;
  }
  auto r = limits_->prepare(n.path, cgroup, l);
  if (!r) {
    core::log_error("otpd {}: {}; counting it as a failed start", n.path, r.message());
    return false;
  }
  out = std::move(*r);
  for (const auto& fd : out.join) {
    o.join_fds.push_back(fd.get());
  }
  return true;
}

// A worker that died of SIGKILL while its memory cgroup counted a new OOM
// kill was the OOM killer's: `oom_killed` (abnormal, so it is restarted).
exit_reason node_daemon::oom_reason(const proc& p, const exit_reason& reason) const {
  if (!p.oom_kills || !limits_ || p.stopping || reason.kind != core::exit_kind::killed) {
    return reason;
  }
  auto now = limits_->oom_kills(p.cgroup, p.v1());
  if (now && *now > *p.oom_kills) {
    core::log_warn("otpd {}: pid {} killed by the OOM killer (memory limit {} bytes)", p.path,
                   p.pid, [&] {
                     const node* n = tree_->find(p.uid);
                     return n != nullptr ? n->worker().limits.memory_bytes : 0;
                   }());
    return {core::exit_kind::oom_killed, SIGKILL};
  }
  return reason;
}

// status: the figures of a running worker's cgroups.
void node_daemon::put_figures(const node& n, protocol::node_status& s) const {
  if (!limits_ || n.pid <= 0) {
    return;
  }
  auto w = procs_.find(n.pid);
  if (w == procs_.end() || (w->second.cgroup.empty() && !w->second.v1().any())) {
    return;
  }
  resource_figures f = limits_->figures(w->second.cgroup, w->second.v1());
  s.cpu_usec = f.cpu_usec;
  s.memory_current = f.memory_current;
  s.memory_peak = f.memory_peak;
  s.pids_current = f.pids_current;
}

}  // namespace otpd::supervisor::detail

// What the control socket's commands do to the node: the daemon's
// control_executor. The table from "cmd" to a decoded request, and the rules
// every request obeys (an error reply for any failure, the audit call for
// every change) are control_handler.cpp's; the replies are otpd::protocol's
// (docs/PROTOCOL.md). A handler may throw: its client gets an error reply.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "node_daemon.hpp"
#include <fmt/format.h>

#include <otpd/protocol/control.hpp>

namespace otpd::supervisor::detail {

namespace proto = otpd::protocol;

namespace {

json fail(const std::string& message) {
  return proto::error_reply{message}.to_json();
}

json ok() {
  return proto::ok_reply{}.to_json();
}

}  // namespace

json node_daemon::ping() {
  return proto::pid_reply{::getpid()}.to_json();
}

json node_daemon::status(const proto::status_request& /*r*/) {
  return current_status().to_json();
}

// start, stop or restart one child.
json node_daemon::child(const proto::child_request& r) {
  core::Result<void> done = r.what == proto::child_request::verb::start ? tree_->start_child(r.id)
                            : r.what == proto::child_request::verb::stop
                                ? tree_->stop_child(r.id)
                                : tree_->restart_child(r.id);
  holds_dirty_ = true;
  return done ? ok() : fail(done.message());
}

json node_daemon::kill(const proto::kill_request& r) {
  auto found = tree_->resolve(r.id);
  if (!found) {
    return fail(found.message());
  }
  node* n = *found;
  int sig = SIGKILL;
  if (const int* number = std::get_if<int>(&r.signal)) {
    sig = *number;
  } else if (const std::string* name = std::get_if<std::string>(&r.signal)) {
    sig = core::signal_from_name(*name);
  }
  if (n->is_supervisor) {
    // A supervisor has no process of its own: killing it is OTP's
    // exit(Sup, kill), which only SIGKILL means (see tree::kill_supervisor).
    if (sig != SIGKILL) {
      return fail(fmt::format(
          "{} is a supervisor: only SIGKILL applies to it (its workers are killed, then its "
          "parent decides)",
          n->path));
    }
    auto done = tree_->kill_supervisor(n->path);
    return done ? ok() : fail(done.message());
  }
  if (n->pid <= 0) {
    return fail(fmt::format("{} has no process to kill", n->path));
  }
  if (sig <= 0 || ::kill(n->pid, sig) != 0) {
    return fail(fmt::format("unable to signal {}: {}", n->pid,
                            sig <= 0 ? "unknown signal" : std::strerror(errno)));
  }
  return proto::pid_reply{n->pid}.to_json();
}

json node_daemon::start_child(const proto::start_child_request& r) {
  auto path = tree_->start_dynamic(r.supervisor, r.args);
  return path ? proto::start_child_reply{*path}.to_json() : fail(path.message());
}

json node_daemon::terminate_child(const proto::terminate_child_request& r) {
  auto done = tree_->terminate_dynamic(r.supervisor, r.id);
  return done ? ok() : fail(done.message());
}

// Rereads the config file; the tree applies the difference. A config that
// does not load changes nothing: the running tree and its config stay.
json node_daemon::reload(bool dry_run) {
  if (dry_run) {
    auto cfg = load_config(opts_.config_path);
    if (!cfg) {
      return fail(cfg.message());
    }
    auto plan = tree_->plan_reload(**cfg);
    proto::reload_reply r{plan.added,     plan.removed,      plan.changed,
                          plan.untouched, plan.changed_keys, true};
    return r.to_json();
  }
  // systemd wants RELOADING=1 ... READY=1 around a reload, failed or not.
  sm_.reloading();
  auto ready_again = [this] {
    if (tree_->root().phase == sup_phase::running) {
      sm_.ready(status_line());
    }  // else the root's supervisor_started event sends it
  };
  auto cfg = load_config(opts_.config_path);
  if (!cfg) {
    ready_again();
    return fail(cfg.message());
  }
  if (std::string why = limits_ ? limits_->check(**cfg) : std::string(); !why.empty()) {
    return fail(why);  // limits this host cannot enforce: the running tree stays
  }
  cfg_ = *cfg;
  ::malloc_trim(0);
  rebuild_base_env();
  control_.set_limits(control_limits_of(*cfg_));
  auto plan = tree_->plan_reload(*cfg_);
  auto s = tree_->reload(cfg_);
  holds_dirty_ = true;  // a removed child's hold goes with it
  drain();
  ready_again();
  return proto::reload_reply{s.added,        s.removed,         s.changed,
                             plan.untouched, plan.changed_keys, false}
      .to_json();
}

json node_daemon::shutdown() {
  tree_->shutdown();
  return ok();
}

json node_daemon::reopen_logs() {
  return proto::reopen_logs_reply{output_.reopen_all()}.to_json();
}

// The recent events now; with follow (the default) every later one too.
json node_daemon::events(control_peer& p, const proto::events_request& r) {
  p.subscribed = r.follow;
  proto::events_reply reply;
  reply.recent.assign(recent_events_.begin(), recent_events_.end());
  return reply.to_json();
}

json node_daemon::whereis(const proto::whereis_request& r) {
  pid_t pid = pid_of_name(r.name);
  return pid > 0 ? proto::pid_reply{pid}.to_json() : fail("no such name");
}

// A "down" event to this connection when the process (by pid or name)
// exits: at once, as noproc, when it is not (or no longer) ours. A
// connection's monitors are bounded: each costs otpd memory until its
// process exits.
json node_daemon::monitor(control_peer& p, const proto::monitor_request& r) {
  pid_t pid = r.pid ? *r.pid : pid_of_name(r.name);
  if (p.id == 0) {
    return fail("no connection");
  }
  if (pid <= 0 || procs_.count(pid) == 0) {
    // OTP: monitoring a process that is gone gives DOWN noproc at once.
    control_.send_to(p.id, proto::pid_reply{pid}.to_json());
    return proto::down_event{pid, {core::exit_kind::noproc, 0}}.to_json();
  }
  if (p.monitors >= max_monitors_per_connection) {
    return fail(
        fmt::format("too many monitors on this connection ({})", max_monitors_per_connection));
  }
  monitors_[pid].push_back(p.id);
  ++p.monitors;
  return proto::pid_reply{pid}.to_json();
}

// The exit reason of one of the last exit_ring_size workers to exit.
json node_daemon::exit_reason_of(const proto::exit_reason_request& r) {
  for (auto it = exits_.rbegin(); it != exits_.rend(); ++it) {
    if (it->first == r.pid) {
      return proto::exit_reason_reply{r.pid, it->second}.to_json();
    }
  }
  return proto::exit_reason_reply{r.pid, std::nullopt}.to_json();
}

// ---- the audit trail ---------------------------------------------------------

// A command that changes something, with who sent it and what came of it:
// an event ("command") in the log, the recent ring and the event stream.
// Its path is the child the command names when there is one, else "/".
void node_daemon::audit(const control_peer& p, const json& request, const json& reply) {
  proto::lifecycle_event e;
  e.event = "command";
  e.ts_ms = now_ms();
  e.cmd = request.value(proto::field::cmd, std::string());
  std::string target;
  auto text_field = [&](const char* f) {
    auto it = request.find(f);
    return it != request.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  target = text_field(proto::field::id);
  std::string sup = text_field(proto::field::supervisor);
  e.path = "/";
  if (!target.empty() && sup.empty()) {
    if (auto found = tree_->resolve(target)) {
      e.path = (*found)->path;
    }
  } else if (!sup.empty()) {
    e.path = sup;
  }
  if (p.id != 0) {
    e.peer_uid = p.uid;
    e.peer_pid = p.pid;
  }
  if (e.cmd == proto::kill_request::cmd && reply.is_object() && proto::is_ok(reply)) {
    e.pid = reply.value(proto::field::pid, -1);
  }
  bool ok = reply.is_object() && proto::is_ok(reply);
  std::string outcome = ok ? "ok"
                        : reply.is_object()
                            ? reply.value(proto::field::error, std::string("failed"))
                            : std::string("no reply");
  std::string args = target.empty() ? sup : sup.empty() ? target : sup + " " + target;
  if (args.size() > max_audit_args) {
    args = args.substr(0, max_audit_args) + "...";  // a request line may be 64 KiB of id
  }
  std::string who = p.id == 0 ? std::string("SIGHUP") : fmt::format("uid {} pid {}", p.uid, p.pid);
  e.detail = fmt::format("{}{}{} by {}: {}", *e.cmd, args.empty() ? "" : " ", args, who, outcome);
  std::string text = "otpd: control: " + *e.detail;
  record_event(std::move(e), ok ? core::log_level::info : core::log_level::warn, text);
}

// ---- status ------------------------------------------------------------------------

proto::node_status node_daemon::status_of(const node& n) const {
  proto::node_status s;
  s.id = n.id;
  s.path = n.path;
  if (n.pid > 0) {
    s.pid = n.pid;
  }
  s.state = to_string(n.state);
  s.restarts = n.restarts;
  s.is_supervisor = n.is_supervisor;
  s.restart = to_string(n.spec->restart);
  if (n.state == child_state::running && n.started_at_ms > 0) {
    s.uptime_ms = now_ms() - n.started_at_ms;
  }
  if (n.has_exit) {
    s.last_exit = n.last_exit.to_string();
  }
  if (!n.spec->name.empty()) {
    s.name = n.spec->name;
  }
  if (n.spec->instance >= 0) {
    s.instance_of = n.spec->instance_of;
    s.instance = n.spec->instance;
  }
  put_figures(n, s);
  if (n.state == child_state::backoff && n.next_start_ms > 0) {
    // The tree counts in monotonic ms; a reader wants a time of day.
    s.next_start_wall_ms = wall_now_ms() + std::max<std::int64_t>(0, n.next_start_ms - now_ms());
  }
  s.last_exits.reserve(n.last_exits.size());
  for (const auto& e : n.last_exits) {
    s.last_exits.push_back({e.wall_ms, e.reason});
  }
  if (!n.is_supervisor) {
    // Where `otpctl logs` finds the output (file outputs only).
    if (n.worker().stdout_spec.kind == output_kind::file) {
      s.stdout_path = n.worker().stdout_spec.path;
    }
    if (n.worker().stderr_spec.kind == output_kind::file) {
      s.stderr_path = n.worker().stderr_spec.path;
    }
    // What it said over sd_notify (notify_children.cpp), while it runs.
    if (auto w = worker_pid_.find(n.uid); w != worker_pid_.end()) {
      if (auto p = procs_.find(w->second); p != procs_.end()) {
        if (!p->second.notify_status.empty()) {
          s.notify_status = p->second.notify_status;
        }
        s.notify_errno = p->second.notify_errno;
      }
    }
  }
  if (n.is_supervisor) {
    s.intensity = proto::intensity_status{tree_->restarts_in_window(n), n.sup().max_restarts,
                                          n.sup().max_seconds};
    s.strategy = to_string(n.sup().strat);
    for (const auto& c : n.children) {
      if (!c->removed || c->state != child_state::stopped) {
        s.children.push_back(status_of(*c));
      }
    }
  }
  if (!n.is_supervisor && n.worker().liveness.enabled && n.pid > 0) {
    // The count lives with the process (liveness.cpp): a new process
    // starts again from 0.
    if (auto p = procs_.find(n.pid); p != procs_.end()) {
      s.liveness_failures = p->second.live_failures;
      s.liveness_threshold = n.worker().liveness.failures;
    }
  }
  return s;
}

proto::status_reply node_daemon::current_status() const {
  proto::status_reply r;
  r.root = status_of(tree_->root());
  r.root.path = "/";
  r.node = cfg_->node.name;
  r.otpd_pid = ::getpid();
  r.runtime_dir = dir_;
  r.containment = to_string(containment_);
  r.binary = opts_.binary;
  r.reexecs = reexecs_;
  return r;
}

}  // namespace otpd::supervisor::detail

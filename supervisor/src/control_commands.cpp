// The control socket's commands: a table from the request's "cmd" to one
// handler each. A handler decodes its request and encodes its reply with
// otpd::protocol (docs/PROTOCOL.md), and may throw on a field of the wrong
// type: the control server turns that into an error reply.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
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

json node_daemon::handle_command(control_conn& c, const json& req) {
  using handler = json (node_daemon::*)(control_conn&, const json&);
  static const std::unordered_map<std::string_view, handler> commands = {
      {proto::ping_request::cmd, &node_daemon::cmd_ping},
      {proto::status_request::cmd, &node_daemon::cmd_status},
      {proto::status_request::alias, &node_daemon::cmd_status},
      {proto::child_request::cmd_of(proto::child_request::verb::start), &node_daemon::cmd_child},
      {proto::child_request::cmd_of(proto::child_request::verb::stop), &node_daemon::cmd_child},
      {proto::child_request::cmd_of(proto::child_request::verb::restart), &node_daemon::cmd_child},
      {proto::kill_request::cmd, &node_daemon::cmd_kill},
      {proto::start_child_request::cmd, &node_daemon::cmd_start_child},
      {proto::terminate_child_request::cmd, &node_daemon::cmd_terminate_child},
      {proto::reload_request::cmd, &node_daemon::cmd_reload},
      {proto::shutdown_request::cmd, &node_daemon::cmd_shutdown},
      {proto::reopen_logs_request::cmd, &node_daemon::cmd_reopen_logs},
      {proto::events_request::cmd, &node_daemon::cmd_events},
      {proto::whereis_request::cmd, &node_daemon::cmd_whereis},
      {proto::monitor_request::cmd, &node_daemon::cmd_monitor},
      {proto::exit_reason_request::cmd, &node_daemon::cmd_exit_reason},
  };
  const std::string cmd = proto::command_of(req);
  auto it = commands.find(cmd);
  if (it == commands.end()) {
    return fail("unknown command: " + cmd);
  }
  return (this->*(it->second))(c, req);
}

json node_daemon::cmd_ping(control_conn& /*c*/, const json& /*req*/) {
  return proto::pid_reply{::getpid()}.to_json();
}

json node_daemon::cmd_status(control_conn& /*c*/, const json& /*req*/) {
  return status().to_json();
}

// start, stop or restart (the request's "cmd") one child.
json node_daemon::cmd_child(control_conn& /*c*/, const json& req) {
  auto r = proto::child_request::from_json(req);
  core::Result<void> done = r.what == proto::child_request::verb::start ? tree_->start_child(r.id)
                            : r.what == proto::child_request::verb::stop
                                ? tree_->stop_child(r.id)
                                : tree_->restart_child(r.id);
  return done ? ok() : fail(done.message());
}

json node_daemon::cmd_kill(control_conn& /*c*/, const json& req) {
  auto r = proto::kill_request::from_json(req);
  auto found = tree_->resolve(r.id);
  if (!found) {
    return fail(found.message());
  }
  node* n = *found;
  if (n->is_supervisor || n->pid <= 0) {
    return fail(fmt::format("{} has no process to kill", n->path));
  }
  int sig = SIGKILL;
  if (const int* number = std::get_if<int>(&r.signal)) {
    sig = *number;
  } else if (const std::string* name = std::get_if<std::string>(&r.signal)) {
    sig = core::signal_from_name(*name);
  }
  if (sig <= 0 || ::kill(n->pid, sig) != 0) {
    return fail(fmt::format("unable to signal {}: {}", n->pid,
                            sig <= 0 ? "unknown signal" : std::strerror(errno)));
  }
  return proto::pid_reply{n->pid}.to_json();
}

json node_daemon::cmd_start_child(control_conn& /*c*/, const json& req) {
  auto r = proto::start_child_request::from_json(req);
  auto path = tree_->start_dynamic(r.supervisor, r.args);
  return path ? proto::start_child_reply{*path}.to_json() : fail(path.message());
}

json node_daemon::cmd_terminate_child(control_conn& /*c*/, const json& req) {
  auto r = proto::terminate_child_request::from_json(req);
  auto done = tree_->terminate_dynamic(r.supervisor, r.id);
  return done ? ok() : fail(done.message());
}

// Rereads the config file; the tree applies the difference.
json node_daemon::cmd_reload(control_conn& /*c*/, const json& /*req*/) {
  auto cfg = load_config(opts_.config_path);
  if (!cfg) {
    return fail(cfg.message());
  }
  cfg_ = *cfg;
  ::malloc_trim(0);
  rebuild_base_env();
  auto s = tree_->reload(cfg_);
  drain();
  return proto::reload_reply{s.added, s.removed, s.changed}.to_json();
}

json node_daemon::cmd_shutdown(control_conn& /*c*/, const json& /*req*/) {
  tree_->shutdown();
  return ok();
}

json node_daemon::cmd_reopen_logs(control_conn& /*c*/, const json& /*req*/) {
  return proto::reopen_logs_reply{output_.reopen_all()}.to_json();
}

// The recent events now; with follow (the default) every later one too.
json node_daemon::cmd_events(control_conn& c, const json& req) {
  c.events = proto::events_request::from_json(req).follow;
  proto::events_reply r;
  r.recent.assign(recent_events_.begin(), recent_events_.end());
  return r.to_json();
}

json node_daemon::cmd_whereis(control_conn& /*c*/, const json& req) {
  pid_t pid = pid_of_name(proto::whereis_request::from_json(req).name);
  return pid > 0 ? proto::pid_reply{pid}.to_json() : fail("no such name");
}

// A "down" event to this connection when the process (by pid or name)
// exits: at once, as noproc, when it is not (or no longer) ours.
json node_daemon::cmd_monitor(control_conn& c, const json& req) {
  auto r = proto::monitor_request::from_json(req);
  pid_t pid = r.pid ? *r.pid : pid_of_name(r.name);
  if (c.id == 0) {
    return fail("no connection");
  }
  if (pid <= 0 || procs_.count(pid) == 0) {
    // OTP: monitoring a process that is gone gives DOWN noproc at once.
    control_.send(c, proto::pid_reply{pid}.to_json());
    return proto::down_event{pid, {core::exit_kind::noproc, 0}}.to_json();
  }
  monitors_[pid].push_back(c.id);
  return proto::pid_reply{pid}.to_json();
}

// The exit reason of one of the last exit_ring_size workers to exit.
json node_daemon::cmd_exit_reason(control_conn& /*c*/, const json& req) {
  pid_t pid = proto::exit_reason_request::from_json(req).pid;
  for (auto it = exits_.rbegin(); it != exits_.rend(); ++it) {
    if (it->first == pid) {
      return proto::exit_reason_reply{pid, it->second}.to_json();
    }
  }
  return proto::exit_reason_reply{pid, std::nullopt}.to_json();
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
  if (n.is_supervisor) {
    s.strategy = to_string(n.sup().strat);
    for (const auto& c : n.children) {
      if (!c->removed || c->state != child_state::stopped) {
        s.children.push_back(status_of(*c));
      }
    }
  }
  return s;
}

proto::status_reply node_daemon::status() const {
  proto::status_reply r;
  r.root = status_of(tree_->root());
  r.root.path = "/";
  r.node = cfg_->node.name;
  r.otpd_pid = ::getpid();
  r.runtime_dir = dir_;
  r.containment = to_string(containment_);
  return r;
}

}  // namespace otpd::supervisor::detail

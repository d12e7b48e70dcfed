// The control socket's commands: a table from the request's "cmd" to one
// handler each. A handler returns the reply (or null for none) and may
// throw on a field of the wrong type: the control server turns that into
// an error reply. docs/PROTOCOL.md describes every request and reply.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "node_daemon.hpp"
#include <fmt/format.h>

namespace otpd::supervisor::detail {

namespace {

json fail(const std::string& message) {
  return json{{"ok", false}, {"error", message}};
}

json ok() {
  return json{{"ok", true}};
}

// The child a request names (start, stop, restart, kill, terminate-child).
std::string who(const json& req) {
  return req.value("id", std::string());
}

}  // namespace

json node_daemon::handle_command(control_conn& c, const json& req) {
  using handler = json (node_daemon::*)(control_conn&, const json&);
  static const std::unordered_map<std::string_view, handler> commands = {
      {"ping", &node_daemon::cmd_ping},
      {"status", &node_daemon::cmd_status},
      {"tree", &node_daemon::cmd_status},
      {"start", &node_daemon::cmd_start},
      {"stop", &node_daemon::cmd_stop},
      {"restart", &node_daemon::cmd_restart},
      {"kill", &node_daemon::cmd_kill},
      {"start-child", &node_daemon::cmd_start_child},
      {"terminate-child", &node_daemon::cmd_terminate_child},
      {"reload", &node_daemon::cmd_reload},
      {"shutdown", &node_daemon::cmd_shutdown},
      {"reopen-logs", &node_daemon::cmd_reopen_logs},
      {"events", &node_daemon::cmd_events},
      {"whereis", &node_daemon::cmd_whereis},
      {"monitor", &node_daemon::cmd_monitor},
      {"exit-reason", &node_daemon::cmd_exit_reason},
  };
  const std::string cmd = req["cmd"].get<std::string>();
  auto it = commands.find(cmd);
  if (it == commands.end()) {
    return fail("unknown command: " + cmd);
  }
  return (this->*(it->second))(c, req);
}

json node_daemon::cmd_ping(control_conn& /*c*/, const json& /*req*/) {
  return {{"ok", true}, {"pid", ::getpid()}};
}

json node_daemon::cmd_status(control_conn& /*c*/, const json& /*req*/) {
  return status_json();
}

json node_daemon::cmd_start(control_conn& /*c*/, const json& req) {
  std::string msg;
  return tree_->start_child(who(req), msg) ? ok() : fail(msg);
}

json node_daemon::cmd_stop(control_conn& /*c*/, const json& req) {
  std::string msg;
  return tree_->stop_child(who(req), msg) ? ok() : fail(msg);
}

json node_daemon::cmd_restart(control_conn& /*c*/, const json& req) {
  std::string msg;
  return tree_->restart_child(who(req), msg) ? ok() : fail(msg);
}

// "signal": a number or a name (TERM, SIGTERM); SIGKILL when absent.
json node_daemon::cmd_kill(control_conn& /*c*/, const json& req) {
  std::string msg;
  node* n = tree_->resolve(who(req), msg);
  if (n == nullptr) {
    return fail(msg);
  }
  if (n->is_supervisor || n->pid <= 0) {
    return fail(fmt::format("{} has no process to kill", n->path));
  }
  int sig = SIGKILL;
  if (req.contains("signal")) {
    sig = req["signal"].is_number() ? req["signal"].get<int>()
                                    : core::signal_from_name(req["signal"].get<std::string>());
  }
  if (sig <= 0 || ::kill(n->pid, sig) != 0) {
    return fail(fmt::format("unable to signal {}: {}", n->pid,
                            sig <= 0 ? "unknown signal" : std::strerror(errno)));
  }
  return {{"ok", true}, {"pid", n->pid}};
}

json node_daemon::cmd_start_child(control_conn& /*c*/, const json& req) {
  std::string msg;
  std::vector<std::string> args;
  if (req.contains("args")) {
    args = req["args"].get<std::vector<std::string>>();
  }
  auto r = tree_->start_dynamic(req.value("supervisor", std::string()), args, msg);
  return r ? json{{"ok", true}, {"path", *r}} : fail(msg);
}

json node_daemon::cmd_terminate_child(control_conn& /*c*/, const json& req) {
  std::string msg;
  auto r = tree_->terminate_dynamic(req.value("supervisor", std::string()), who(req), msg);
  return r ? ok() : fail(msg);
}

// Rereads the config file; the tree applies the difference.
json node_daemon::cmd_reload(control_conn& /*c*/, const json& /*req*/) {
  std::string msg;
  auto cfg = load_config(opts_.config_path, msg);
  if (!cfg) {
    return fail(msg);
  }
  cfg_ = *cfg;
  ::malloc_trim(0);
  rebuild_base_env();
  auto s = tree_->reload(cfg_);
  drain();
  return {{"ok", true}, {"added", s.added}, {"removed", s.removed}, {"changed", s.changed}};
}

json node_daemon::cmd_shutdown(control_conn& /*c*/, const json& /*req*/) {
  tree_->shutdown();
  return ok();
}

json node_daemon::cmd_reopen_logs(control_conn& /*c*/, const json& /*req*/) {
  std::size_t files = output_.reopen_all();
  return {{"ok", true}, {"files", files}};
}

// The recent events now; with "follow" (the default) every later one too.
json node_daemon::cmd_events(control_conn& c, const json& req) {
  c.events = req.value("follow", true);
  json recent = json::array();
  for (const auto& e : recent_events_) {
    recent.push_back(e);
  }
  return {{"ok", true}, {"recent", std::move(recent)}};
}

json node_daemon::cmd_whereis(control_conn& /*c*/, const json& req) {
  pid_t pid = pid_of_name(req.value("name", std::string()));
  return pid > 0 ? json{{"ok", true}, {"pid", pid}} : fail("no such name");
}

// A "down" event to this connection when the process (by "pid" or "name")
// exits: at once, as noproc, when it is not (or no longer) ours.
json node_daemon::cmd_monitor(control_conn& c, const json& req) {
  pid_t pid = -1;
  if (req.contains("pid")) {
    pid = req["pid"].get<pid_t>();
  } else {
    pid = pid_of_name(req.value("name", std::string()));
  }
  if (c.id == 0) {
    return fail("no connection");
  }
  if (pid <= 0 || procs_.count(pid) == 0) {
    // OTP: monitoring a process that is gone gives DOWN noproc at once.
    json down = {{"event", "down"}, {"pid", pid}};
    down.update(reason_json({core::exit_kind::noproc, 0}));
    control_.send(c, {{"ok", true}, {"pid", pid}});
    return down;
  }
  monitors_[pid].push_back(c.id);
  return {{"ok", true}, {"pid", pid}};
}

// The exit reason of one of the last exit_ring_size workers to exit.
json node_daemon::cmd_exit_reason(control_conn& /*c*/, const json& req) {
  pid_t pid = req.value("pid", -1);
  for (auto it = exits_.rbegin(); it != exits_.rend(); ++it) {
    if (it->first == pid) {
      json j = {{"ok", true}, {"found", true}, {"pid", pid}};
      j.update(reason_json(it->second));
      return j;
    }
  }
  return {{"ok", true}, {"found", false}, {"pid", pid}};
}

// ---- status ------------------------------------------------------------------------

json node_daemon::node_json(const node& n) const {
  json j = {{"id", n.id},
            {"path", n.path},
            {"pid", n.pid > 0 ? json(n.pid) : json(nullptr)},
            {"state", to_string(n.state)},
            {"restarts", n.restarts},
            {"type", n.is_supervisor ? "supervisor" : "worker"},
            {"restart", to_string(n.spec->restart)}};
  if (n.state == child_state::running && n.started_at_ms > 0) {
    j["uptime_ms"] = now_ms() - n.started_at_ms;
  }
  if (n.has_exit) {
    j["last_exit"] = n.last_exit.to_string();
  }
  if (!n.spec->name.empty()) {
    j["name"] = n.spec->name;
  }
  if (n.is_supervisor) {
    j["strategy"] = to_string(n.sup().strat);
    json kids = json::array();
    for (const auto& c : n.children) {
      if (!c->removed || c->state != child_state::stopped) {
        kids.push_back(node_json(*c));
      }
    }
    j["children"] = std::move(kids);
  }
  return j;
}

json node_daemon::status_json() const {
  const node& r = tree_->root();
  json j = node_json(r);
  j["ok"] = true;
  j["node"] = cfg_->node.name;
  j["otpd_pid"] = ::getpid();
  j["runtime_dir"] = dir_;
  j["path"] = "/";
  return j;
}

}  // namespace otpd::supervisor::detail

#include <utility>

#include <otpd/protocol/control.hpp>

namespace otpd::protocol {

namespace {

json request(std::string_view cmd) {
  return json{{field::cmd, std::string(cmd)}};
}

json ok_object() {
  return json{{field::ok, true}};
}

std::string string_or_empty(const json& j, const char* key) {
  return j.value(key, std::string());
}

}  // namespace

std::string command_of(const json& request) {
  return request.at(field::cmd).get<std::string>();
}

void put_reason(json& j, const core::exit_reason& r) {
  j[field::reason] = r.to_string();
  j[field::reason_kind] = static_cast<int>(r.kind);
  j[field::reason_value] = r.value;
}

core::exit_reason get_reason(const json& j) {
  // A kind from a newer peer that this build does not know reads as unknown:
  // abnormal, so a transient child is restarted rather than left down.
  return core::exit_reason::from_codes(j.at(field::reason_kind).get<int>(),
                                       j.at(field::reason_value).get<int>());
}

// ---- requests ------------------------------------------------------------------

json status_request::to_json() const {
  return request(as_tree ? alias : cmd);
}
status_request status_request::from_json(const json& j) {
  return {command_of(j) == alias};
}

std::string_view child_request::cmd_of(verb v) noexcept {
  switch (v) {
    case verb::start:
      return "start";
    case verb::stop:
      return "stop";
    case verb::restart:
      return "restart";
  }
  return "start";
}

json child_request::to_json() const {
  json j = request(cmd_of(what));
  j[field::id] = id;
  return j;
}

child_request child_request::from_json(const json& j) {
  child_request r;
  std::string c = command_of(j);
  r.what = c == cmd_of(verb::stop)      ? verb::stop
           : c == cmd_of(verb::restart) ? verb::restart
                                        : verb::start;
  r.id = string_or_empty(j, field::id);
  return r;
}

json kill_request::to_json() const {
  json j = request(cmd);
  j[field::id] = id;
  if (const int* n = std::get_if<int>(&signal)) {
    j[field::signal] = *n;
  } else if (const std::string* s = std::get_if<std::string>(&signal)) {
    j[field::signal] = *s;
  }
  return j;
}

kill_request kill_request::from_json(const json& j) {
  kill_request r;
  r.id = string_or_empty(j, field::id);
  if (j.contains(field::signal)) {
    const json& s = j[field::signal];
    if (s.is_number()) {
      r.signal = s.get<int>();
    } else {
      r.signal = s.get<std::string>();
    }
  }
  return r;
}

json start_child_request::to_json() const {
  json j = request(cmd);
  j[field::supervisor] = supervisor;
  j[field::args] = args;
  return j;
}

start_child_request start_child_request::from_json(const json& j) {
  start_child_request r;
  r.supervisor = string_or_empty(j, field::supervisor);
  if (j.contains(field::args)) {
    r.args = j[field::args].get<std::vector<std::string>>();
  }
  return r;
}

json terminate_child_request::to_json() const {
  json j = request(cmd);
  j[field::supervisor] = supervisor;
  j[field::id] = id;
  return j;
}

terminate_child_request terminate_child_request::from_json(const json& j) {
  return {string_or_empty(j, field::supervisor), string_or_empty(j, field::id)};
}

json events_request::to_json() const {
  json j = request(cmd);
  j[field::follow] = follow;
  return j;
}

events_request events_request::from_json(const json& j) {
  return {j.value(field::follow, true)};
}

json whereis_request::to_json() const {
  json j = request(cmd);
  j[field::name] = name;
  return j;
}

whereis_request whereis_request::from_json(const json& j) {
  return {string_or_empty(j, field::name)};
}

json monitor_request::to_json() const {
  json j = request(cmd);
  if (pid) {
    j[field::pid] = *pid;
  } else {
    j[field::name] = name;
  }
  return j;
}

monitor_request monitor_request::from_json(const json& j) {
  monitor_request r;
  if (j.contains(field::pid)) {
    r.pid = j[field::pid].get<pid_t>();
  } else {
    r.name = string_or_empty(j, field::name);
  }
  return r;
}

json exit_reason_request::to_json() const {
  json j = request(cmd);
  j[field::pid] = pid;
  return j;
}

exit_reason_request exit_reason_request::from_json(const json& j) {
  return {j.value(field::pid, -1)};
}

// ---- replies -------------------------------------------------------------------

json error_reply::to_json() const {
  return {{field::ok, false}, {field::error, error}};
}

error_reply error_reply::from_json(const json& j) {
  return {j.value(field::error, std::string("refused"))};
}

json ok_reply::to_json() const {
  return ok_object();
}
ok_reply ok_reply::from_json(const json& /*j*/) {
  return {};
}

bool is_ok(const json& reply) {
  return reply.is_object() && reply.value(field::ok, false);
}

json pid_reply::to_json() const {
  json j = ok_object();
  j[field::pid] = pid;
  return j;
}

pid_reply pid_reply::from_json(const json& j) {
  return {j.at(field::pid).get<pid_t>()};
}

json start_child_reply::to_json() const {
  json j = ok_object();
  j[field::path] = path;
  return j;
}

start_child_reply start_child_reply::from_json(const json& j) {
  return {j.at(field::path).get<std::string>()};
}

json reload_request::to_json() const {
  json j = request(cmd);
  if (dry_run) {
    j[field::dry_run] = true;
  }
  return j;
}

reload_request reload_request::from_json(const json& j) {
  return {j.value(field::dry_run, false)};
}

json reload_reply::to_json() const {
  json j = ok_object();
  j[field::added] = added;
  j[field::removed] = removed;
  j[field::changed] = changed;
  j[field::untouched] = untouched;
  json keys = json::object();
  for (const auto& [path, ks] : changed_keys) {
    keys[path] = ks;
  }
  j[field::changed_keys] = std::move(keys);
  j[field::dry_run] = dry_run;
  return j;
}

reload_reply reload_reply::from_json(const json& j) {
  reload_reply r{j.at(field::added).get<std::vector<std::string>>(),
                 j.at(field::removed).get<std::vector<std::string>>(),
                 j.at(field::changed).get<std::vector<std::string>>()};
  // Absent from an older otpd's answer.
  r.untouched = j.value(field::untouched, std::vector<std::string>{});
  if (auto it = j.find(field::changed_keys); it != j.end() && it->is_object()) {
    for (auto k = it->begin(); k != it->end(); ++k) {
      r.changed_keys.emplace_back(k.key(), k->get<std::vector<std::string>>());
    }
  }
  r.dry_run = j.value(field::dry_run, false);
  return r;
}

json reexec_request::to_json() const {
  json j = request(cmd);
  if (!binary.empty()) {
    j[field::binary] = binary;
  }
  return j;
}

reexec_request reexec_request::from_json(const json& j) {
  return {string_or_empty(j, field::binary)};
}

json reexec_reply::to_json() const {
  json j = ok_object();
  j[field::binary] = binary;
  j[field::pid] = pid;
  return j;
}

reexec_reply reexec_reply::from_json(const json& j) {
  return {j.at(field::binary).get<std::string>(), j.at(field::pid).get<pid_t>()};
}

json reopen_logs_reply::to_json() const {
  json j = ok_object();
  j[field::files] = files;
  return j;
}

reopen_logs_reply reopen_logs_reply::from_json(const json& j) {
  return {j.at(field::files).get<std::size_t>()};
}

json exit_reason_reply::to_json() const {
  json j = ok_object();
  j[field::found] = reason.has_value();
  j[field::pid] = pid;
  if (reason) {
    put_reason(j, *reason);
  }
  return j;
}

exit_reason_reply exit_reason_reply::from_json(const json& j) {
  exit_reason_reply r;
  r.pid = j.at(field::pid).get<pid_t>();
  if (j.value(field::found, false)) {
    r.reason = get_reason(j);
  }
  return r;
}

json node_status::to_json() const {
  json j = {{field::id, id},
            {field::path, path},
            {field::pid, pid ? json(*pid) : json(nullptr)},
            {field::state, state},
            {field::restarts, restarts},
            {field::type, is_supervisor ? "supervisor" : "worker"},
            {field::restart, restart}};
  if (uptime_ms) {
    j[field::uptime_ms] = *uptime_ms;
  }
  if (last_exit) {
    j[field::last_exit] = *last_exit;
  }
  if (name) {
    j[field::name] = *name;
  }
  if (stdout_path) {
    j[field::stdout_path] = *stdout_path;
  }
  if (stderr_path) {
    j[field::stderr_path] = *stderr_path;
  }
  if (strategy) {
    j[field::strategy] = *strategy;
  }
  if (instance_of) {
    j[field::instance_of] = *instance_of;
  }
  if (instance) {
    j[field::instance] = *instance;
  }
  for (auto [key, v] :
       {std::pair{field::cpu_usec, &cpu_usec}, std::pair{field::memory_current, &memory_current},
        std::pair{field::memory_peak, &memory_peak},
        std::pair{field::pids_current, &pids_current}}) {
    if (*v) {
      j[key] = **v;
    }
  }
  if (is_supervisor) {
    json kids = json::array();
    for (const auto& c : children) {
      kids.push_back(c.to_json());
    }
    j[field::children] = std::move(kids);
  }
  if (next_start_wall_ms) {
    j[field::next_start_wall_ms] = *next_start_wall_ms;
  }
  if (!last_exits.empty()) {
    json list = json::array();
    for (const auto& e : last_exits) {
      json x = {{field::wall_ms, e.wall_ms}};
      put_reason(x, e.reason);
      list.push_back(std::move(x));
    }
    j[field::last_exits] = std::move(list);
  }
  if (intensity) {
    j[field::intensity] = {{field::used, intensity->used},
                           {field::max_restarts, intensity->max_restarts},
                           {field::max_seconds, intensity->max_seconds}};
  }
  if (liveness_failures) {
    j[field::liveness_failures] = *liveness_failures;
  }
  if (liveness_threshold) {
    j[field::liveness_threshold] = *liveness_threshold;
  }
  if (notify_status) {
    j[field::notify_status] = *notify_status;
  }
  if (notify_errno) {
    j[field::notify_errno] = *notify_errno;
  }
  return j;
}

namespace {

template <class T>
std::optional<T> optional_field(const json& j, const char* key) {
  if (!j.contains(key)) {
    return std::nullopt;
  }
  return j[key].get<T>();
}

}  // namespace

node_status node_status::from_json(const json& j) {
  node_status n;
  n.id = j.at(field::id).get<std::string>();
  n.path = j.at(field::path).get<std::string>();
  if (!j.at(field::pid).is_null()) {
    n.pid = j[field::pid].get<pid_t>();
  }
  n.state = j.at(field::state).get<std::string>();
  n.restarts = j.at(field::restarts).get<int>();
  n.is_supervisor = j.at(field::type).get<std::string>() == "supervisor";
  n.restart = j.at(field::restart).get<std::string>();
  n.uptime_ms = optional_field<std::int64_t>(j, field::uptime_ms);
  n.last_exit = optional_field<std::string>(j, field::last_exit);
  n.name = optional_field<std::string>(j, field::name);
  n.stdout_path = optional_field<std::string>(j, field::stdout_path);
  n.stderr_path = optional_field<std::string>(j, field::stderr_path);
  n.strategy = optional_field<std::string>(j, field::strategy);
  n.instance_of = optional_field<std::string>(j, field::instance_of);
  n.instance = optional_field<int>(j, field::instance);
  n.cpu_usec = optional_field<std::uint64_t>(j, field::cpu_usec);
  n.memory_current = optional_field<std::uint64_t>(j, field::memory_current);
  n.memory_peak = optional_field<std::uint64_t>(j, field::memory_peak);
  n.pids_current = optional_field<std::uint64_t>(j, field::pids_current);
  if (j.contains(field::children)) {
    for (const auto& c : j[field::children]) {
      n.children.push_back(from_json(c));
    }
  }
  n.next_start_wall_ms = optional_field<std::int64_t>(j, field::next_start_wall_ms);
  if (j.contains(field::last_exits)) {
    for (const auto& e : j[field::last_exits]) {
      n.last_exits.push_back({e.at(field::wall_ms).get<std::int64_t>(), get_reason(e)});
    }
  }
  if (j.contains(field::intensity)) {
    const json& i = j[field::intensity];
    n.intensity =
        intensity_status{i.at(field::used).get<int>(), i.at(field::max_restarts).get<int>(),
                         i.at(field::max_seconds).get<int>()};
  }
  n.liveness_failures = optional_field<int>(j, field::liveness_failures);
  n.liveness_threshold = optional_field<int>(j, field::liveness_threshold);
  n.notify_status = optional_field<std::string>(j, field::notify_status);
  n.notify_errno = optional_field<int>(j, field::notify_errno);
  return n;
}

json status_reply::to_json() const {
  json j = root.to_json();
  j[field::ok] = true;
  j[field::node] = node;
  j[field::otpd_pid] = otpd_pid;
  j[field::runtime_dir] = runtime_dir;
  if (!containment.empty()) {
    j[field::containment] = containment;
  }
  if (!binary.empty()) {
    j[field::binary] = binary;
  }
  j[field::reexecs] = reexecs;
  return j;
}

status_reply status_reply::from_json(const json& j) {
  return {node_status::from_json(j),
          j.at(field::node).get<std::string>(),
          j.at(field::otpd_pid).get<pid_t>(),
          j.at(field::runtime_dir).get<std::string>(),
          j.value(field::containment, std::string()),
          j.value(field::binary, std::string()),
          j.value(field::reexecs, std::uint64_t{0})};
}

// ---- events --------------------------------------------------------------------

json lifecycle_event::to_json() const {
  json j = {{field::event, event}, {field::path, path}, {field::ts_ms, ts_ms}};
  if (!time.empty()) {
    j[field::time] = time;
  }
  if (pid) {
    j[field::pid] = *pid;
  }
  if (reason) {
    put_reason(j, *reason);
  }
  if (detail) {
    j[field::detail] = *detail;
  }
  if (cmd) {
    j[field::cmd] = *cmd;
  }
  if (peer_uid) {
    j[field::peer_uid] = *peer_uid;
  }
  if (peer_pid) {
    j[field::peer_pid] = *peer_pid;
  }
  return j;
}

lifecycle_event lifecycle_event::from_json(const json& j) {
  lifecycle_event e;
  e.event = j.at(field::event).get<std::string>();
  e.path = j.at(field::path).get<std::string>();
  e.ts_ms = j.at(field::ts_ms).get<std::int64_t>();
  e.time = j.value(field::time, std::string());
  e.pid = optional_field<pid_t>(j, field::pid);
  if (j.contains(field::reason_kind)) {
    e.reason = get_reason(j);
  }
  e.detail = optional_field<std::string>(j, field::detail);
  e.cmd = optional_field<std::string>(j, field::cmd);
  e.peer_uid = optional_field<uid_t>(j, field::peer_uid);
  e.peer_pid = optional_field<pid_t>(j, field::peer_pid);
  return e;
}

json events_reply::to_json() const {
  json j = ok_object();
  json list = json::array();
  for (const auto& e : recent) {
    list.push_back(e.to_json());
  }
  j[field::recent] = std::move(list);
  return j;
}

events_reply events_reply::from_json(const json& j) {
  events_reply r;
  for (const auto& e : j.at(field::recent)) {
    r.recent.push_back(lifecycle_event::from_json(e));
  }
  return r;
}

json down_event::to_json() const {
  json j = {{field::event, std::string(event)}, {field::pid, pid}};
  put_reason(j, reason);
  return j;
}

down_event down_event::from_json(const json& j) {
  return {j.at(field::pid).get<pid_t>(), get_reason(j)};
}

}  // namespace otpd::protocol

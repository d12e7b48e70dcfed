#include <otpd/observer/web_json.hpp>
#include <otpd/protocol/json_text.hpp>

namespace otpd::observer {

namespace {

template <class T>
json or_null(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

json child_json(const child_view& r, bool with_exits) {
  json j = {{"path", r.path},
            {"id", r.id},
            {"depth", r.depth},
            {"supervisor", r.supervisor},
            {"state", r.state},
            {"restart", r.restart_type},
            {"pid", or_null(r.pid)},
            {"restarts", r.restarts},
            {"uptime_ms", or_null(r.uptime_ms)},
            {"cpu_percent", or_null(r.cpu_percent)},
            {"cpu_seconds", or_null(r.cpu_seconds)},
            {"memory_bytes", or_null(r.memory_bytes)},
            {"last_exit", or_null(r.last_exit)},
            {"next_start_ms", or_null(r.next_start_wall_ms)},
            {"exits_by_kind", r.exits_by_kind}};
  if (r.supervisor) {
    j["strategy"] = r.strategy;
    j["restarts_seen"] = r.restarts_seen;
    if (r.intens) {
      j["intensity"] = {{"used", r.intens->used},
                        {"max_restarts", r.intens->max_restarts},
                        {"max_seconds", r.intens->max_seconds}};
    }
  }
  if (!r.name.empty()) {
    j["name"] = r.name;
  }
  if (!r.instance_of.empty()) {
    j["instance_of"] = r.instance_of;
    j["instance"] = or_null(r.instance);
  }
  if (r.liveness_failures) {
    j["liveness_failures"] = *r.liveness_failures;
    j["liveness_threshold"] = or_null(r.liveness_threshold);
  }
  if (with_exits) {
    json exits = json::array();
    for (const auto& e : r.recent_exits) {
      exits.push_back({{"time_ms", e.wall_ms},
                       {"reason", e.reason},
                       {"kind", e.kind},
                       {"pid", or_null(e.pid)}});
    }
    j["recent_exits"] = std::move(exits);
  }
  return j;
}

json group_json(const snapshot& s, const instance_group& g) {
  json members = json::array();
  for (std::size_t m : g.members) {
    members.push_back(s.rows[m].path);
  }
  return {{"key", g.key},
          {"id", g.id},
          {"parent", g.parent},
          {"depth", g.depth},
          {"members", std::move(members)},
          {"total", g.total},
          {"running", g.running},
          {"restarts", g.restarts},
          {"cpu_percent", or_null(g.cpu_percent)},
          {"memory_bytes", or_null(g.memory_bytes)},
          {"uptime_ms", or_null(g.uptime_ms)},
          {"state", g.state}};
}

json snapshot_json(const snapshot& s) {
  json rows = json::array();
  for (const auto& r : s.rows) {
    rows.push_back(child_json(r, false));
  }
  json groups = json::array();
  for (const auto& g : s.groups) {
    groups.push_back(group_json(s, g));
  }
  return {{"node", s.facts.node},
          {"otpd_pid", s.facts.otpd_pid},
          {"otpd_rss_bytes", or_null(s.facts.rss_bytes)},
          {"otpd_fds", or_null(s.facts.open_fds)},
          {"taken_at_ms", s.taken_at_wall_ms},
          {"rows", std::move(rows)},
          {"groups", std::move(groups)}};
}

std::string dump_safe(const json& j) {
  return protocol::dump_json(j);
}

}  // namespace otpd::observer

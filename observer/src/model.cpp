#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include <otpd/observer/model.hpp>

namespace otpd::observer {

namespace {

std::int64_t clock_ms(clockid_t id) noexcept {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The supervisor of a path: "web/api" -> "web", "api" -> "/".
std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || path == "/") {
    return "/";
  }
  return path.substr(0, slash);
}

template <class T>
std::optional<T> opt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return std::nullopt;
  }
  return it->get<T>();
}

// A number field of obj, whatever JSON number type it came as.
std::optional<double> number(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) {
    return std::nullopt;
  }
  return it->get<double>();
}

}  // namespace

std::int64_t steady_ms() noexcept {
  return clock_ms(CLOCK_MONOTONIC);
}
std::int64_t wall_ms() noexcept {
  return clock_ms(CLOCK_REALTIME);
}

std::string exit_kind_name(int reason_kind) {
  static const char* const names[] = {"normal",      "exit_code",  "signal",         "core_dump",
                                      "killed",      "shutdown",   "noproc",         "unknown",
                                      "exec_failed", "oom_killed", "liveness_failed"};
  if (reason_kind < 0 || reason_kind >= static_cast<int>(std::size(names))) {
    return "other";
  }
  return names[reason_kind];
}

model::model(clock_fn now, clock_fn wall) : now_(std::move(now)), wall_(std::move(wall)) {}

model::row* model::find(const std::string& path) {
  auto it = index_.find(path);
  return it == index_.end() ? nullptr : &rows_[it->second];
}

void model::take_status_figures(row& r, const json& node) {
  // Figures otpd reports (from the child's cgroup) win over /proc: they
  // count every process of the child, not only its first. Accepted flat or
  // under "resources"; cpu as microseconds (cgroup cpu.stat usage_usec).
  const json* src = &node;
  if (auto it = node.find("resources"); it != node.end() && it->is_object()) {
    src = &*it;
  }
  auto cpu_usec = number(*src, "cpu_usec");
  auto mem = number(*src, "memory_bytes");
  if (!mem) {
    mem = number(*src, "memory_current");
  }
  // Without memory (a worker in a cgroup without the memory controller:
  // cpu_usec alone) /proc gives both, so the columns stay of one source.
  if (!mem) {
    r.v.figures_from_status = false;
    return;
  }
  r.v.figures_from_status = true;
  if (mem) {
    r.v.memory_bytes = static_cast<std::uint64_t>(std::max(0.0, *mem));
  }
  if (cpu_usec) {
    double cpu_s = *cpu_usec / 1e6;
    std::int64_t now = now_();
    if (r.has_baseline && r.sampled_pid == r.v.pid && now > r.sampled_at &&
        cpu_s >= r.sampled_cpu_s) {
      r.v.cpu_percent =
          (cpu_s - r.sampled_cpu_s) * 100000.0 / static_cast<double>(now - r.sampled_at);
    }
    r.v.cpu_seconds = cpu_s;
    r.sampled_pid = r.v.pid;
    r.sampled_cpu_s = cpu_s;
    r.sampled_at = now;
    r.has_baseline = true;
  }
}

void model::add_rows(const json& node, int depth, std::map<std::string, row>& old) {
  row r;
  r.v.path = node.at("path").get<std::string>();
  if (auto it = old.find(r.v.path); it != old.end()) {
    row& prev = it->second;
    r.v.exits_by_kind = std::move(prev.v.exits_by_kind);
    r.v.recent_exits = std::move(prev.v.recent_exits);
    r.v.restarts_seen = prev.v.restarts_seen;
    r.sampled_pid = prev.sampled_pid;
    r.sampled_start = prev.sampled_start;
    r.sampled_cpu_s = prev.sampled_cpu_s;
    r.sampled_at = prev.sampled_at;
    r.has_baseline = prev.has_baseline;
    r.v.cpu_percent = prev.v.cpu_percent;
    r.v.cpu_seconds = prev.v.cpu_seconds;
    r.v.memory_bytes = prev.v.memory_bytes;
  }
  r.v.id = node.at("id").get<std::string>();
  r.v.depth = depth;
  r.v.supervisor = node.value("type", std::string()) == "supervisor";
  r.v.state = node.value("state", std::string());
  r.v.restart_type = node.value("restart", std::string());
  r.v.strategy = opt<std::string>(node, "strategy").value_or("");
  r.v.name = opt<std::string>(node, "name").value_or("");
  r.v.pid = opt<pid_t>(node, "pid");
  r.v.restarts = node.value("restarts", 0);
  r.v.last_exit = opt<std::string>(node, "last_exit");
  r.v.next_start_wall_ms = opt<std::int64_t>(node, "next_start_wall_ms");
  r.v.instance_of = opt<std::string>(node, "instance_of").value_or("");
  r.v.instance = opt<int>(node, "instance");
  r.v.liveness_failures = opt<int>(node, "liveness_failures");
  r.v.liveness_threshold = opt<int>(node, "liveness_threshold");
  // Exits from before the observer started: otpd keeps the last few.
  if (auto it = node.find("last_exits");
      r.v.recent_exits.empty() && it != node.end() && it->is_array()) {
    for (const auto& e : *it) {
      if (e.is_object()) {
        r.v.recent_exits.push_back({e.value("wall_ms", std::int64_t{0}),
                                    e.value("reason", std::string()),
                                    exit_kind_name(e.value("reason_kind", -1)), std::nullopt});
      }
    }
  }
  if (auto up = opt<std::int64_t>(node, "uptime_ms")) {
    r.running_since = now_() - *up;
  }
  if (r.sampled_pid != r.v.pid) {
    r.has_baseline = false;
    r.v.cpu_percent.reset();
    r.v.cpu_seconds.reset();
    r.v.memory_bytes.reset();
  }
  if (!r.v.supervisor) {
    take_status_figures(r, node);
  }
  if (r.v.supervisor) {
    if (auto it = node.find("intensity"); it != node.end() && it->is_object()) {
      r.v.intens = intensity{it->value("used", 0), it->value("max_restarts", 0),
                             it->value("max_seconds", 0)};
    } else if (auto used = opt<int>(node, "restarts_in_window")) {
      r.v.intens = intensity{*used, node.value("max_restarts", 0), node.value("max_seconds", 0)};
    }
  }
  index_[r.v.path] = rows_.size();
  rows_.push_back(std::move(r));
  if (auto it = node.find("children"); it != node.end() && it->is_array()) {
    for (const auto& c : *it) {
      add_rows(c, depth + 1, old);
    }
  }
}

void model::apply_status(const json& reply) {
  std::map<std::string, row> old;
  for (auto& r : rows_) {
    std::string path = r.v.path;
    old.emplace(std::move(path), std::move(r));
  }
  rows_.clear();
  index_.clear();
  facts_.node = reply.value("node", std::string());
  facts_.otpd_pid = reply.value("otpd_pid", -1);
  facts_.runtime_dir = reply.value("runtime_dir", std::string());
  ++facts_.status_fetches;
  add_rows(reply, -1, old);
}

void model::record_exit(row& r, const json& ev, bool failed_start) {
  std::string reason = ev.value("reason", std::string());
  std::string kind = exit_kind_name(ev.value("reason_kind", -1));
  ++r.v.exits_by_kind[kind];
  r.v.recent_exits.push_back({wall_(), reason, kind, opt<pid_t>(ev, "pid")});
  while (r.v.recent_exits.size() > max_recent_exits) {
    r.v.recent_exits.pop_front();
  }
  auto pid = opt<pid_t>(ev, "pid");
  // A late event about an earlier process must not undo a newer status.
  if (r.v.pid && pid && *r.v.pid != *pid) {
    return;
  }
  r.v.pid.reset();
  r.v.state = failed_start ? "failed" : "stopped";
  r.v.next_start_wall_ms.reset();
  r.v.last_exit = reason;
  r.running_since.reset();
  r.v.cpu_percent.reset();
  r.v.liveness_failures.reset();  // it counted for that process only
}

bool model::apply_event(const json& ev) {
  if (!ev.is_object()) {
    return false;
  }
  try {
    std::string type = ev.at("event").get<std::string>();
    std::string path = ev.value("path", std::string());
    ++facts_.events_by_type[type];
    json kept = ev;
    kept["wall_ms"] = wall_();
    recent_events_.push_back(std::move(kept));
    while (recent_events_.size() > max_recent_events) {
      recent_events_.pop_front();
    }
    if (auto ts = opt<std::int64_t>(ev, "ts_ms")) {
      last_event_ts_ = std::max(*ts, last_event_ts_.value_or(*ts));
    }
    row* r = find(path);
    if (r == nullptr) {
      return true;  // a child the model has not seen: status knows
    }
    auto pid = opt<pid_t>(ev, "pid");
    if (type == "started" && !r->v.supervisor) {
      r->v.pid = pid;
      r->v.state = "starting";
      r->running_since.reset();
      r->v.cpu_percent.reset();
      r->v.liveness_failures.reset();
      return false;
    }
    if (type == "probe_failed") {
      // "liveness N/M: ...": the count of the process the model knows.
      auto detail = ev.value("detail", std::string());
      int n = 0;
      int m = 0;
      if (r->v.pid && pid && *r->v.pid == *pid &&
          std::sscanf(detail.c_str(), "liveness %d/%d", &n, &m) == 2) {
        r->v.liveness_failures = n;
        r->v.liveness_threshold = m;
      }
      return false;
    }
    if (type == "ready" && !r->v.supervisor) {
      if (r->v.pid && pid && *r->v.pid != *pid) {
        return true;
      }
      r->v.pid = pid;
      r->v.state = "running";
      r->running_since = now_();
      return false;
    }
    if (type == "exited" || type == "start_failed") {
      record_exit(*r, ev, type == "start_failed");
      return false;
    }
    if (type == "restarting") {
      if (row* sup = find(parent_of(path))) {
        ++sup->v.restarts_seen;
      }
      return true;
    }
    if (type == "supervisor_stopped" && ev.contains("reason")) {
      record_exit(*r, ev, false);
    }
    return true;
  } catch (const json::exception&) {
    ++facts_.events_by_type["malformed"];
    return false;
  }
}

void model::sample(const proc_reader& read, long tps, long page) {
  std::int64_t now = now_();
  for (auto& r : rows_) {
    if (r.v.supervisor || r.v.figures_from_status) {
      continue;
    }
    if (!r.v.pid) {
      r.v.cpu_percent.reset();
      r.v.memory_bytes.reset();
      continue;
    }
    auto s = read(*r.v.pid);
    if (!s) {
      r.v.cpu_percent.reset();
      continue;
    }
    double cpu_s = static_cast<double>(s->cpu_ticks) / static_cast<double>(tps);
    bool same = r.has_baseline && r.sampled_pid == r.v.pid && r.sampled_start == s->start_ticks;
    if (same && now > r.sampled_at && cpu_s >= r.sampled_cpu_s) {
      r.v.cpu_percent =
          (cpu_s - r.sampled_cpu_s) * 100000.0 / static_cast<double>(now - r.sampled_at);
    } else if (!same) {
      r.v.cpu_percent.reset();  // a new process: no interval yet
    }
    r.v.cpu_seconds = cpu_s;
    r.v.memory_bytes = s->rss_pages * static_cast<std::uint64_t>(page);
    r.sampled_pid = r.v.pid;
    r.sampled_start = s->start_ticks;
    r.sampled_cpu_s = cpu_s;
    r.sampled_at = now;
    r.has_baseline = true;
  }
}

void model::set_otpd_figures(std::optional<std::uint64_t> rss_bytes,
                             std::optional<std::uint64_t> open_fds) {
  facts_.rss_bytes = rss_bytes;
  facts_.open_fds = open_fds;
}

std::vector<std::pair<std::string, pid_t>> model::running_pids() const {
  std::vector<std::pair<std::string, pid_t>> out;
  for (const auto& r : rows_) {
    if (r.v.pid) {
      out.emplace_back(r.v.path, *r.v.pid);
    }
  }
  return out;
}

int state_rank(std::string_view state) noexcept {
  if (state == "running") {
    return 0;
  }
  if (state == "starting") {
    return 1;
  }
  if (state == "stopping") {
    return 2;
  }
  if (state == "backoff") {
    return 3;
  }
  if (state == "failed") {
    return 5;
  }
  return 4;  // stopped, or a state this build does not know
}

std::vector<instance_group> group_instances(const std::vector<child_view>& rows) {
  std::vector<instance_group> out;
  std::map<std::string, std::size_t> by_key;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const child_view& r = rows[i];
    if (r.instance_of.empty() || r.supervisor) {
      continue;
    }
    std::string parent = parent_of(r.path);
    std::string key = (parent == "/" ? std::string() : parent + "/") + r.instance_of + "-*";
    auto [it, fresh] = by_key.try_emplace(key, out.size());
    if (fresh) {
      instance_group g;
      g.key = key;
      g.id = r.instance_of;
      g.parent = parent;
      g.depth = r.depth;
      g.state = r.state;
      out.push_back(std::move(g));
    }
    instance_group& g = out[it->second];
    g.members.push_back(i);
    ++g.total;
    g.running += r.state == "running" ? 1 : 0;
    g.restarts += r.restarts;
    if (r.cpu_percent) {
      g.cpu_percent = g.cpu_percent.value_or(0.0) + *r.cpu_percent;
    }
    if (r.memory_bytes) {
      g.memory_bytes = g.memory_bytes.value_or(0) + *r.memory_bytes;
    }
    if (r.uptime_ms) {
      g.uptime_ms = std::max(*r.uptime_ms, g.uptime_ms.value_or(0));
    }
    if (state_rank(r.state) > state_rank(g.state)) {
      g.state = r.state;
    }
  }
  for (auto& g : out) {
    // Tree order is start order; the instance number is what a reader expects.
    std::stable_sort(g.members.begin(), g.members.end(), [&](std::size_t a, std::size_t b) {
      return rows[a].instance.value_or(0) < rows[b].instance.value_or(0);
    });
  }
  return out;
}

snapshot model::snap() const {
  snapshot s;
  s.facts = facts_;
  s.recent_events = recent_events_;
  s.taken_at_wall_ms = wall_();
  std::int64_t now = now_();
  s.rows.reserve(rows_.size());
  for (const auto& r : rows_) {
    s.rows.push_back(r.v);
    if (r.running_since && r.v.state == "running") {
      s.rows.back().uptime_ms = std::max<std::int64_t>(0, now - *r.running_since);
    } else {
      s.rows.back().uptime_ms.reset();
    }
  }
  s.groups = group_instances(s.rows);
  return s;
}

std::string format_uptime(std::optional<std::int64_t> ms) {
  if (!ms) {
    return "-";
  }
  std::int64_t v = *ms;
  if (v < 60000) {
    return fmt::format("{:.1f}s", static_cast<double>(v) / 1000.0);
  }
  std::int64_t s = v / 1000;
  if (s < 3600) {
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  }
  if (s < 86400) {
    return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  }
  return fmt::format("{}d{:02}h", s / 86400, (s % 86400) / 3600);
}

std::string format_bytes(std::optional<std::uint64_t> bytes) {
  if (!bytes) {
    return "-";
  }
  auto b = static_cast<double>(*bytes);
  if (b < 1024.0 * 1024.0) {
    return fmt::format("{:.0f}K", b / 1024.0);
  }
  if (b < 1024.0 * 1024.0 * 1024.0) {
    return fmt::format("{:.1f}M", b / (1024.0 * 1024.0));
  }
  return fmt::format("{:.1f}G", b / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace otpd::observer

#pragma once

// The model as the JSON that otpd-web's page reads (/api/tree, the SSE
// "tree" messages, /api/child). Text a child controls goes out as JSON
// strings only; the page puts it into the DOM with textContent, never as
// markup. Invalid UTF-8 is replaced (dump_safe), never a throw.

#include <string>

#include <otpd/observer/model.hpp>

namespace otpd::observer {

// {"node", "otpd_pid", "otpd_rss_bytes", "otpd_fds", "taken_at_ms",
//  "rows": [{path, id, depth, supervisor, state, pid, restarts, uptime_ms,
//            cpu_percent, cpu_seconds, memory_bytes, last_exit, strategy,
//            name, restart, intensity?, restarts_seen, exits_by_kind,
//            instance_of?, instance?, liveness_failures?, liveness_threshold?}],
//  "groups": [{key, id, parent, depth, members: [path], total, running,
//              restarts, cpu_percent, memory_bytes, uptime_ms, state}]}
// (a group: the instances of one `instances: N` worker, model.hpp).
[[nodiscard]] json snapshot_json(const snapshot& s);
// One group, its members by path.
[[nodiscard]] json group_json(const snapshot& s, const instance_group& g);
// One row plus its recent exits ({"time_ms", "reason", "kind", "pid"}).
[[nodiscard]] json child_json(const child_view& r, bool with_exits);
// j as one line of JSON, invalid UTF-8 replaced by U+FFFD.
[[nodiscard]] std::string dump_safe(const json& j);

}  // namespace otpd::observer

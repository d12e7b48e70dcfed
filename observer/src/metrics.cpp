#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <otpd/observer/metrics.hpp>

namespace otpd::observer {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;

const char* const all_states[] = {"starting", "running", "stopping",
                                  "stopped",  "failed",  "backoff"};

}  // namespace

std::string render_metrics(const snapshot& s) {
  prometheus::Registry reg;
  prometheus::Labels node{{"node", s.facts.node}};
  auto& up = BuildGauge()
                 .Name("otpd_child_up")
                 .Help("1 while the child runs, else 0")
                 .Labels(node)
                 .Register(reg);
  auto& state = BuildGauge()
                    .Name("otpd_child_state")
                    .Help("1 for the child's current state, 0 for the others")
                    .Labels(node)
                    .Register(reg);
  auto& restarts = BuildCounter()
                       .Name("otpd_child_restarts_total")
                       .Help("Restarts of the child, as otpd counts them")
                       .Labels(node)
                       .Register(reg);
  auto& exits = BuildCounter()
                    .Name("otpd_child_exits_total")
                    .Help("Exits of the child seen by this observer, by reason kind")
                    .Labels(node)
                    .Register(reg);
  auto& uptime = BuildGauge()
                     .Name("otpd_child_uptime_seconds")
                     .Help("Seconds since the child became ready (running children only)")
                     .Labels(node)
                     .Register(reg);
  auto& cpu = BuildCounter()
                  .Name("otpd_child_cpu_seconds_total")
                  .Help(
                      "CPU time of the child's current process (or of its cgroup, when otpd "
                      "reports it)")
                  .Labels(node)
                  .Register(reg);
  auto& mem = BuildGauge()
                  .Name("otpd_child_memory_bytes")
                  .Help("Resident memory of the child's process (or its cgroup's current)")
                  .Labels(node)
                  .Register(reg);
  auto& sup_restarts = BuildCounter()
                           .Name("otpd_supervisor_restarts_observed_total")
                           .Help("Restarts of the supervisor's children seen by this observer")
                           .Labels(node)
                           .Register(reg);
  auto& rss = BuildGauge()
                  .Name("otpd_resident_memory_bytes")
                  .Help("otpd's own resident memory")
                  .Labels(node)
                  .Register(reg);
  auto& fds = BuildGauge().Name("otpd_open_fds").Help("otpd's open fds").Labels(node).Register(reg);
  auto& events = BuildCounter()
                     .Name("otpd_events_total")
                     .Help("Lifecycle events seen by this observer, by event")
                     .Labels(node)
                     .Register(reg);
  auto& fetches = BuildCounter()
                      .Name("otpd_observer_status_fetches_total")
                      .Help("Status requests this observer made")
                      .Labels(node)
                      .Register(reg);

  bool any_intensity = false;
  for (const auto& r : s.rows) {
    any_intensity |= r.intens.has_value();
  }
  prometheus::Family<prometheus::Gauge>* intens_used = nullptr;
  prometheus::Family<prometheus::Gauge>* intens_max = nullptr;
  if (any_intensity) {
    intens_used = &BuildGauge()
                       .Name("otpd_supervisor_intensity_used")
                       .Help("Restarts within the supervisor's current window")
                       .Labels(node)
                       .Register(reg);
    intens_max = &BuildGauge()
                      .Name("otpd_supervisor_intensity_max")
                      .Help("max_restarts of the supervisor (within max_seconds)")
                      .Labels(node)
                      .Register(reg);
  }

  for (const auto& r : s.rows) {
    prometheus::Labels by_path{{"path", r.path}};
    // An instance of an `instances: N` worker: instance_of too, so that a
    // query can sum its group (sum by (instance_of) (otpd_child_up)).
    auto with = [&](prometheus::Labels l) {
      if (!r.instance_of.empty() && !r.supervisor) {
        l.emplace("instance_of", r.instance_of);
      }
      return l;
    };
    if (r.supervisor) {
      sup_restarts.Add(by_path).Increment(static_cast<double>(r.restarts_seen));
      if (r.intens && intens_used != nullptr) {
        intens_used->Add(by_path).Set(r.intens->used);
        intens_max->Add(by_path).Set(r.intens->max_restarts);
      }
      if (r.path == "/") {
        continue;  // the root: no parent restarts or exits it
      }
    }
    up.Add(with(by_path)).Set(r.state == "running" ? 1 : 0);
    for (const char* st : all_states) {
      state.Add(with({{"path", r.path}, {"state", st}})).Set(r.state == st ? 1 : 0);
    }
    restarts.Add(with(by_path)).Increment(static_cast<double>(std::max(0, r.restarts)));
    for (const auto& [kind, n] : r.exits_by_kind) {
      exits.Add(with({{"path", r.path}, {"reason", kind}})).Increment(static_cast<double>(n));
    }
    if (r.uptime_ms) {
      uptime.Add(with(by_path)).Set(static_cast<double>(*r.uptime_ms) / 1000.0);
    }
    if (r.cpu_seconds) {
      cpu.Add(with(by_path)).Increment(*r.cpu_seconds);
    }
    if (r.memory_bytes) {
      mem.Add(with(by_path)).Set(static_cast<double>(*r.memory_bytes));
    }
  }
  if (s.facts.rss_bytes) {
    rss.Add({}).Set(static_cast<double>(*s.facts.rss_bytes));
  }
  if (s.facts.open_fds) {
    fds.Add({}).Set(static_cast<double>(*s.facts.open_fds));
  }
  for (const auto& [ev, n] : s.facts.events_by_type) {
    events.Add({{"event", ev}}).Increment(static_cast<double>(n));
  }
  fetches.Add({}).Increment(static_cast<double>(s.facts.status_fetches));
  return prometheus::TextSerializer().Serialize(reg.Collect());
}

}  // namespace otpd::observer

#pragma once

// The model as Prometheus metrics, in the text exposition format, through
// prometheus-cpp's registry and TextSerializer (not its pull server:
// otpd-web serves the text itself). A fresh registry per scrape: children
// come and go, and a series of a removed child must go with it.
//
//   otpd_child_up{path}                         1 while running
//   otpd_child_state{path,state}                1 for the current state
//   otpd_child_restarts_total{path}             restarts, as otpd counts them
//   otpd_child_exits_total{path,reason}         exits seen by this observer, by reason kind
//   otpd_child_uptime_seconds{path}             while running
//   otpd_child_cpu_seconds_total{path}          of the current process (or its cgroup)
//   otpd_child_memory_bytes{path}               resident set (or the cgroup's current)
//   otpd_supervisor_restarts_observed_total{path}  restarting events of its children
//   otpd_supervisor_intensity_used{path}        only when status reports it (see OBSERVER.md)
//   otpd_supervisor_intensity_max{path}
//   otpd_resident_memory_bytes, otpd_open_fds   otpd's own, from /proc
//   otpd_events_total{event}                    lifecycle events seen by this observer
//   otpd_observer_status_fetches_total

#include <string>

#include <otpd/observer/model.hpp>

namespace otpd::observer {

[[nodiscard]] std::string render_metrics(const snapshot& s);

}  // namespace otpd::observer

#pragma once

#include <string>
#include <vector>

namespace otpd::supervisor {

enum class log_format { text, json };

// How otpd keeps what a worker starts (docs/CONTAINMENT.md): automatic is a
// cgroup per worker where a writable cgroup v2 hierarchy is found, process
// groups otherwise; cgroup makes the start fail without one; pgroup forces
// the fallback.
enum class containment_choice { automatic, cgroup, pgroup };

struct daemon_options {
  std::string config_path;
  std::string runtime_dir;  // empty: $OTPD_RUNTIME_DIR, then the config's, then the default
  log_format format = log_format::text;
  containment_choice containment = containment_choice::automatic;
  // otpctl reexec: the binary otpd runs from (/proc/self/exe resolved at
  // start: after a package upgrade that link names a deleted file, the new
  // binary is at this path) and the arguments it was started with, which
  // the exec keeps.
  std::string binary;
  std::vector<std::string> argv;
  // Started by a reexec: the memfd holding the state of the otpd that
  // exec'd us (its tree, processes, capture pipes); -1 for a normal start.
  int reexec_state_fd = -1;
};

// The format of the state otpctl reexec hands to the next otpd binary; that
// binary says which one it reads with `otpd CONFIG --reexec-probe`.
inline constexpr int reexec_state_version = 1;

// Runs the node in the foreground until it is shut down (exit code 0) or its
// root supervisor gives up or fails to start (non-zero). Errors before the
// loop starts (bad config, a second otpd on the same runtime dir) are logged
// and returned as exit code 1.
[[nodiscard]] int run_daemon(const daemon_options& options);

struct config;
// Whether every worker's `limits:` can be enforced on this host with this
// containment (otpd --check; the start checks again with what it opened):
// "" when they can, else one "FILE:LINE:COL: KEY: why" line per limit.
[[nodiscard]] std::string check_limits(const config& c, containment_choice choice);

// The control socket of a runtime dir.
[[nodiscard]] std::string control_socket_path(const std::string& runtime_dir);

// The runtime dir the daemon and otpctl agree on: explicit, else
// $OTPD_RUNTIME_DIR, else fallback (the config's), else the default.
[[nodiscard]] std::string pick_runtime_dir(const std::string& explicit_dir,
                                           const std::string& fallback);

}  // namespace otpd::supervisor

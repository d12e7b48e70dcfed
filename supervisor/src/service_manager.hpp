#pragma once

// otpd under a service manager that speaks the sd_notify protocol (systemd's
// Type=notify, s6's notification-fd does not apply): one datagram per state
// change to $NOTIFY_SOCKET, "KEY=VALUE" lines. The protocol is documented in
// sd_notify(3); it is small enough that otpd writes it itself instead of
// linking libsystemd.
//
// What otpd says, and when:
//   READY=1        once the root supervisor has started every child (and
//                  again after a reload has been applied)
//   RELOADING=1    when a reload (SIGHUP, otpctl reload) begins, with
//                  MONOTONIC_USEC as systemd 253 asks for
//   STOPPING=1     when the node begins its orderly stop
//   STATUS=...     one line for `systemctl status`: children running/total
//   WATCHDOG=1     every WATCHDOG_USEC/2 from the loop itself, so a stuck
//                  loop misses its pings and systemd acts
//   MAINPID        never: otpd is the process systemd started
//
// NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are removed from otpd's
// environment at start: they are otpd's, and a child that inherited them
// would speak for otpd to systemd.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::supervisor {

class service_manager {
 public:
  // Reads (and unsets) the environment. Without NOTIFY_SOCKET every call
  // below does nothing.
  static service_manager from_environment();

  [[nodiscard]] bool active() const { return fd_.get() >= 0; }
  [[nodiscard]] const std::string& socket_path() const { return path_; }
  // The watchdog interval systemd asked for (WatchdogSec=), if any and if it
  // is meant for this process (WATCHDOG_PID).
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog() const { return watchdog_; }

  // Sends one datagram ("READY=1\nSTATUS=..."). Errors are values: the
  // caller logs them once; a service manager that went away never stops otpd.
  // wait_for_room: a state change waits up to 1 s when the manager's queue
  // is full; anything else is dropped then.
  core::Result<void> notify(std::string_view state, bool wait_for_room = false) const;

  // READY=1 once; the next call after reloading() sends it again.
  void ready(std::string_view status);
  void reloading();
  void stopping();
  // STATUS=, only when it differs from the last one sent.
  void status(std::string_view status);
  void watchdog_ping() const;

 private:
  core::unique_fd fd_;
  std::string path_;  // as given ('@' for the abstract namespace)
  std::optional<std::chrono::microseconds> watchdog_;
  bool ready_sent_ = false;
  bool stopping_ = false;
  std::string last_status_;
  mutable bool error_logged_ = false;
  mutable bool connected_ = false;
  bool connect_socket() const;
};

}  // namespace otpd::supervisor

#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace otpd::core {

// Why a process ended, in OTP's terms. The numbers are stable: they travel in
// DOWN/EXIT messages and in the daemon's events, so never renumber.
enum class exit_kind : std::uint8_t {
  normal = 0,       // exit code 0 (OTP: normal)
  exit_code = 1,    // exited with a non-zero code (value = code)
  signal = 2,       // killed by a signal (value = signal number)
  core_dump = 3,    // killed by a signal and dumped core (value = signal)
  killed = 4,       // SIGKILL (OTP: killed)
  shutdown = 5,     // stopped in order by its supervisor (OTP: shutdown)
  noproc = 6,       // there was no such process
  unknown = 7,      // it ended, but only its parent knows how
  exec_failed = 8,  // the program could not be executed (value = errno)
  // Ended by otpd for a failure, never an ordered stop: both are abnormal, so
  // a transient child is restarted and intensity counts them.
  oom_killed = 9,       // killed by the kernel's OOM killer in its memory limit
  liveness_failed = 10  // killed by otpd after its liveness probe failed
};
// The highest code this build knows; a reader meeting a higher one (a newer
// peer) must treat it as abnormal: exit_reason::from_codes does.
inline constexpr int exit_kind_max = 10;

struct exit_reason {
  exit_kind kind = exit_kind::normal;
  int value = 0;

  static exit_reason normal() { return {exit_kind::normal, 0}; }
  static exit_reason code(int c) {
    return c == 0 ? normal() : exit_reason{exit_kind::exit_code, c};
  }
  static exit_reason from_signal(int sig);
  // From a waitpid() status word.
  static exit_reason from_wait_status(int status);
  // From waitid()'s siginfo_t fields (si_code, si_status).
  static exit_reason from_siginfo(int code, int status);
  // From the stable numbers of the wire (kind, value). A kind this build does
  // not know becomes `unknown` (abnormal), keeping the value.
  static exit_reason from_codes(int kind, int value);

  // OTP: a transient child is restarted only after an abnormal exit, i.e.
  // anything except normal and shutdown.
  [[nodiscard]] bool is_normal() const {
    return kind == exit_kind::normal || kind == exit_kind::shutdown;
  }

  // "normal", "exit 3", "killed", "signal SIGTERM", "core dumped (SIGSEGV)"...
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const exit_reason&, const exit_reason&) = default;
};

// "SIGTERM" for 15; "signal 64" for ones without a name.
[[nodiscard]] std::string signal_name(int sig);
// Inverse of signal_name ("TERM", "SIGTERM" or a number); 0 when unknown.
[[nodiscard]] int signal_from_name(const std::string& name);

}  // namespace otpd::core

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::core {

enum class log_level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// Process-wide log settings. The level comes from OTPD_LOG_LEVEL
// (debug|info|warn|error|off) unless set here; the name prefixes every line.
void set_log_name(std::string_view name);
void set_log_level(log_level level);
[[nodiscard]] log_level current_log_level() noexcept;

// Each line starts with the wall-clock time (rfc3339_utc) unless turned off:
// by default on, except in a child of otpd ($OTPD_CHILD set), whose stderr
// otpd captures and stamps itself; $OTPD_LOG_TIMESTAMPS=0|1 overrides that.
void set_log_timestamps(bool on);
[[nodiscard]] bool log_timestamps() noexcept;

// Milliseconds since the Unix epoch (CLOCK_REALTIME).
[[nodiscard]] std::int64_t wall_ms() noexcept;
// RFC 3339 in UTC with milliseconds, "2026-12-02T10:01:02.345Z": UTC so that
// lines sort as text and read the same in a container without a time zone.
// Writes rfc3339_chars characters (no NUL) to out.
inline constexpr std::size_t rfc3339_chars = 24;
void format_rfc3339_utc(std::int64_t unix_ms, char* out) noexcept;
[[nodiscard]] std::string rfc3339_utc(std::int64_t unix_ms);

// Writes one line to stderr with a single write(2), so lines of concurrent
// processes never interleave: "<time> <name>[pid]: <level>: <text>".
void log_line(log_level level, std::string_view text) noexcept;

// ---- journald and syslog -------------------------------------------------------
//
// The sockets, each replaced by an environment variable so that tests (and a
// container that relays its journal) can point otpd at a stand-in:
//   $OTPD_JOURNAL_SOCKET  journald's stdout-stream socket (/run/systemd/journal/stdout)
//   $OTPD_SYSLOG_SOCKET   syslog's datagram socket (/dev/log)
[[nodiscard]] std::string journal_stream_path();
[[nodiscard]] std::string syslog_socket_path();

// A stream into the journal, set up with systemd's stdout-stream header (what
// libsystemd's sd_journal_stream_fd sends): each line written to it is an
// entry with SYSLOG_IDENTIFIER=identifier at priority (0-7); with
// level_prefix a line may start with "<N>" to give its own. Errors: the
// socket's (ENOENT, ECONNREFUSED when no journald listens).
[[nodiscard]] Result<unique_fd> journal_stream(std::string_view identifier, int priority,
                                               bool level_prefix);
// A datagram socket connected to syslog_socket_path().
[[nodiscard]] Result<unique_fd> syslog_socket();
// One syslog message as glibc's syslog(3) sends it (RFC 3164):
// "<PRI>Mmm dd hh:mm:ss ident: text"; false when it was not sent.
bool syslog_send(int fd, int pri, std::string_view ident, std::string_view text) noexcept;

enum class log_target { stderr_stream, journald, syslog };
// Where log_line writes from now on: stderr (the default); journald (stderr
// itself becomes a journal stream named by the log name, each line with its
// level as "<N>" and no time: the journal stamps entries itself); syslog
// (each line a datagram, facility daemon). Errors: the socket cannot be
// reached; the target then stays as it was.
[[nodiscard]] Result<void> set_log_target(log_target t);

template <class... Args>
void log(log_level level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < current_log_level()) {
    return;
  }
  log_line(level, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::debug, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::info, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::warn, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::error, f, std::forward<Args>(args)...);
}

}  // namespace otpd::core

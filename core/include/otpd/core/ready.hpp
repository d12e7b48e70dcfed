#pragma once

#include <cstddef>

#include <otpd/core/clock.hpp>
#include <otpd/core/result.hpp>

namespace otpd::core {

// Readiness, as s6 does it: the parent passes the write end of a pipe to the
// child and names its number in $OTPD_READY_FD; the child writes one "\n"
// there when it is ready. EOF before the newline means the start failed.

// The environment variable that names the child's ready fd.
inline constexpr const char* ready_fd_env = "OTPD_READY_FD";

// Child side: writes "\n" once to the fd named by $OTPD_READY_FD, closes it
// and unsets the variable (so that our own children do not inherit it).
// A no-op without the variable; an error when the write fails.
Result<void> notify_ready() noexcept;

// The parsing rule, for readers on a loop: bytes read from a ready fd mean
// "ready" when they hold a newline (anything before it is ignored).
[[nodiscard]] bool holds_ready_line(const char* bytes, std::size_t n) noexcept;

// Parent side: waits on the read end of a ready pipe until the newline
// (ok), EOF before it (errc::start_failed) or the deadline (errc::timeout).
[[nodiscard]] Result<void> wait_ready(int fd, deadline until) noexcept;

}  // namespace otpd::core

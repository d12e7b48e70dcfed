#pragma once

#include <sys/time.h>

#include <chrono>
#include <string>
#include <system_error>

#include <hiredis/hiredis.h>

#include <otpd/redis_client/reply.hpp>

namespace otpd::redis_client::detail {

// Deep copy of a hiredis reply tree into our value type.
[[nodiscard]] reply from_hiredis(const redisReply* r);

// A hiredis context error (REDIS_ERR_*) as an error_code. saved_errno is the
// errno observed right after the failing call, for REDIS_ERR_IO.
[[nodiscard]] std::error_code error_from_hiredis(int err, int saved_errno, const char* errstr);

// hiredis 0.14.1 creates its sockets without SOCK_CLOEXEC; mark the fd so it
// never leaks into a child spawned later.
void set_cloexec(int fd) noexcept;

// hiredis 0.14.1 writes with write(2), not send(MSG_NOSIGNAL): a write to a
// connection the server just dropped would raise SIGPIPE and kill the
// program. Sets SIGPIPE to ignored, once, if it still has its default action
// (a program's own handler is left alone). spawn() resets dispositions in
// children, so this does not leak into them.
void ignore_sigpipe_once() noexcept;

// milliseconds as a struct timeval (zero stays zero: no timeout).
[[nodiscard]] struct timeval to_timeval(std::chrono::milliseconds ms) noexcept;

}  // namespace otpd::redis_client::detail

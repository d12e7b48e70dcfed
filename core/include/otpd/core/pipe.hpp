#pragma once

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::core {

// Both ends of a pipe, owned.
struct pipe_fds {
  unique_fd read;
  unique_fd write;
};

// pipe2(2) with O_CLOEXEC always (an end meant for a child is placed there
// through spawn_options::fds, whose dup2 clears the flag); `flags` adds more,
// e.g. O_NONBLOCK for both ends.
[[nodiscard]] Result<pipe_fds> make_pipe(int flags = 0) noexcept;

}  // namespace otpd::core

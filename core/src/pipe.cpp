#include <fcntl.h>
#include <unistd.h>

#include <otpd/core/pipe.hpp>

namespace otpd::core {

Result<pipe_fds> make_pipe(int flags) noexcept {
  int p[2];
  if (::pipe2(p, flags | O_CLOEXEC) != 0) {
    return errno_code();
  }
  return pipe_fds{unique_fd(p[0]), unique_fd(p[1])};
}

}  // namespace otpd::core

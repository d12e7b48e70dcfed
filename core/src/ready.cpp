#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <otpd/core/ready.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::core {

Result<void> notify_ready() noexcept {
  const char* fd_s = std::getenv(ready_fd_env);
  if (fd_s == nullptr || *fd_s == '\0') {
    return {};
  }
  unique_fd fd(std::atoi(fd_s));
  ::unsetenv(ready_fd_env);
  ssize_t w;
  do {
    w = ::write(fd.get(), "\n", 1);
  } while (w < 0 && errno == EINTR);
  if (w != 1) {
    return errno_code(w < 0 ? errno : EIO);
  }
  return {};
}

bool holds_ready_line(const char* bytes, std::size_t n) noexcept {
  return n > 0 && std::memchr(bytes, '\n', n) != nullptr;
}

Result<void> wait_ready(int fd, deadline until) noexcept {
  char buf[64];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, until.poll_timeout_ms());
    if (rc < 0 && errno == EINTR) {
      continue;
    }
    if (rc <= 0) {
      return errc::timeout;
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    if (n <= 0) {
      return errc::start_failed;
    }
    if (holds_ready_line(buf, static_cast<std::size_t>(n))) {
      return {};
    }
  }
}

}  // namespace otpd::core

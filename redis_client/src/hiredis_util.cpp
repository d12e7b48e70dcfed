#include "hiredis_util.hpp"

#include <fcntl.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>

namespace otpd::redis_client::detail {

reply from_hiredis(const redisReply* r) {
  reply out;
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      out.type = reply_type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = reply_type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = reply_type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = reply_type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = reply_type::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(from_hiredis(r->element[i]));
      }
      break;
    case REDIS_REPLY_NIL:
    default:
      out.type = reply_type::nil;
      break;
  }
  return out;
}

std::error_code error_from_hiredis(int err, int saved_errno, const char* errstr) {
  switch (err) {
    case REDIS_ERR_IO:
      // hiredis reports a socket timeout (SO_RCVTIMEO) as an I/O error with EAGAIN.
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT) {
        return core::errc::timeout;
      }
      if (saved_errno != 0) {
        return core::errno_code(saved_errno);
      }
      return core::errc::disconnected;
    case REDIS_ERR_EOF:
      return core::errc::closed;
    case REDIS_ERR_PROTOCOL:
      return core::errc::protocol;
    case REDIS_ERR_OOM:
      return std::make_error_code(std::errc::not_enough_memory);
    case REDIS_ERR_OTHER:
    default:
      // 0.14.1 uses "other" for name resolution failures and for a connect
      // timeout ("Connection timed out" comes as REDIS_ERR_IO on most paths).
      if (errstr != nullptr && std::strstr(errstr, "timed out") != nullptr) {
        return core::errc::timeout;
      }
      if (errstr != nullptr && std::strstr(errstr, "resolve") != nullptr) {
        return core::errc::invalid_argument;
      }
      return core::errc::disconnected;
  }
}

void set_cloexec(int fd) noexcept {
  if (fd < 0) {
    return;
  }
  int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) {
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

void ignore_sigpipe_once() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      ::sigemptyset(&ign.sa_mask);
      ::sigaction(SIGPIPE, &ign, nullptr);
    }
  });
}

struct timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  struct timeval tv {};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace otpd::redis_client::detail

// otpd's log lines and children's output into journald or syslog, through
// their sockets (no libsystemd: the stdout-stream protocol is a few header
// lines, and a syslog message one datagram).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <otpd/core/log.hpp>

namespace otpd::core {

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : std::string(fallback);
}

Result<unique_fd> connect_unix(const std::string& path, int type) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    return Result<unique_fd>(errno_code(ENAMETOOLONG), path + ": path too long for a socket");
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  // Non-blocking: a journal whose backlog is full must not stall otpd's
  // loop (EAGAIN is then an error like any other); the caller gets it back
  // blocking, as a child expects its stdout to be.
  unique_fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return errno_code();
  }
  int r = 0;
  do {
    r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    int err = errno;
    return Result<unique_fd>(errno_code(err), path + ": " + std::strerror(err));
  }
  return fd;
}

void set_blocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) {
    ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
}

bool send_all(int fd, const char* p, std::size_t n) noexcept {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

std::string journal_stream_path() {
  return env_or("OTPD_JOURNAL_SOCKET", "/run/systemd/journal/stdout");
}

std::string syslog_socket_path() {
  return env_or("OTPD_SYSLOG_SOCKET", "/dev/log");
}

Result<unique_fd> journal_stream(std::string_view identifier, int priority, bool level_prefix) {
  auto fd = connect_unix(journal_stream_path(), SOCK_STREAM);
  if (!fd) {
    return fd;
  }
  // The header journald's stdout stream expects, a line each: identifier,
  // unit id (empty: journald finds it from the peer), priority,
  // level_prefix, forward to syslog, to kmsg, to the console.
  std::string header(identifier);
  for (char& c : header) {
    if (c == '\n') {
      c = ' ';
    }
  }
  header += fmt::format("\n\n{}\n{}\n0\n0\n0\n", priority, level_prefix ? 1 : 0);
  if (!send_all(fd->get(), header.data(), header.size())) {
    int err = errno;
    return Result<unique_fd>(errno_code(err), journal_stream_path() + ": " + std::strerror(err));
  }
  // Nothing ever comes back; a write-only stream (as sd_journal_stream_fd).
  (void)::shutdown(fd->get(), SHUT_RD);
  set_blocking(fd->get());
  return fd;
}

Result<unique_fd> syslog_socket() {
  return connect_unix(syslog_socket_path(), SOCK_DGRAM);
}

bool syslog_send(int fd, int pri, std::string_view ident, std::string_view text) noexcept {
  try {
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = ::time(nullptr);
    struct tm tm {};
    ::localtime_r(&now, &tm);
    std::string msg =
        fmt::format("<{}>{} {:2} {:02}:{:02}:{:02} {}: {}", pri, months[tm.tm_mon % 12], tm.tm_mday,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, ident, text);
    ssize_t w = 0;
    do {
      w = ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (w < 0 && errno == EINTR);
    return w >= 0;
  } catch (...) {
    return false;
  }
}

}  // namespace otpd::core

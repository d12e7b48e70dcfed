#include "service_manager.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include <otpd/core/log.hpp>

namespace otpd::supervisor {

namespace {

std::string take_env(const char* name) {
  const char* v = std::getenv(name);
  std::string out = v != nullptr ? v : "";
  ::unsetenv(name);
  return out;
}

std::optional<std::uint64_t> parse_u64(const std::string& s) {
  if (s.empty() || s.size() > 19) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

service_manager service_manager::from_environment() {
  service_manager m;
  std::string path = take_env("NOTIFY_SOCKET");
  std::string usec = take_env("WATCHDOG_USEC");
  std::string wpid = take_env("WATCHDOG_PID");
  if (path.empty()) {
    return m;
  }
  sockaddr_un sa{};
  // '/' a path, '@' the abstract namespace; anything else (vsock:...) is a
  // transport otpd does not speak.
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof sa.sun_path) {
    core::log_warn("otpd: NOTIFY_SOCKET={}: not a Unix socket path otpd can use; not notifying",
                   path);
    return m;
  }
  m.fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!m.fd_) {
    core::log_warn("otpd: NOTIFY_SOCKET: socket: {}; not notifying", std::strerror(errno));
    return m;
  }
  m.path_ = path;
  // Connected, so that a full queue at the manager's end shows as POLLOUT
  // not ready (a Unix datagram queue holds only net.unix.max_dgram_qlen,
  // often 10); a manager that is not there yet is tried at every send.
  (void)m.connect_socket();
  auto us = parse_u64(usec);
  auto for_pid = parse_u64(wpid);
  if (us && *us > 0 && (!for_pid || static_cast<pid_t>(*for_pid) == ::getpid())) {
    m.watchdog_ = std::chrono::microseconds(*us);
  }
  return m;
}

bool service_manager::connect_socket() const {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path_.data(), path_.size());
  if (path_[0] == '@') {
    sa.sun_path[0] = '\0';
  }
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
  connected_ = ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0;
  return connected_;
}

core::Result<void> service_manager::notify(std::string_view state, bool wait_for_room) const {
  if (!active()) {
    return {};
  }
  if (!connected_ && !connect_socket()) {
    int e = errno;
    return {core::errno_code(e), fmt::format("notify socket {}: {}", path_, std::strerror(e))};
  }
  ssize_t n;
  for (int tries = 0;; ++tries) {
    n = ::send(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL);
    if (n >= 0 || errno == EINTR) {
      if (n >= 0) {
        break;
      }
      continue;
    }
    // A state change (READY, RELOADING, STOPPING) waits up to 1 s for room
    // in the manager's queue; a ping or a STATUS line is simply dropped.
    if (errno == EAGAIN && wait_for_room && tries == 0) {
      pollfd p{fd_.get(), POLLOUT, 0};
      (void)::poll(&p, 1, 1000);
      continue;
    }
    if (errno == ECONNREFUSED || errno == ENOTCONN) {
      connected_ = false;  // the manager's socket went away: connect again next time
    }
    break;
  }
  if (n < 0) {
    int e = errno;
    return {core::errno_code(e), fmt::format("notify socket {}: {}", path_, std::strerror(e))};
  }
  return {};
}

namespace {
void log_failure(const core::Result<void>& r, bool& logged) {
  // Once: a service manager that is gone would otherwise fill the log.
  if (!r && !logged) {
    logged = true;
    core::log_warn("otpd: unable to notify the service manager: {}", r.message());
  }
}
}  // namespace

void service_manager::ready(std::string_view status) {
  if (ready_sent_ || stopping_) {
    return;
  }
  ready_sent_ = true;
  last_status_ = status;
  log_failure(notify(fmt::format("READY=1\nSTATUS={}", status), true), error_logged_);
}

void service_manager::reloading() {
  if (stopping_) {
    return;
  }
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  auto usec = static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
              static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
  ready_sent_ = false;
  log_failure(notify(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading", usec), true),
              error_logged_);
}

void service_manager::stopping() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  log_failure(notify("STOPPING=1\nSTATUS=stopping the tree", true), error_logged_);
}

void service_manager::status(std::string_view status) {
  if (!ready_sent_ || stopping_ || status == last_status_) {
    return;
  }
  last_status_ = status;
  log_failure(notify(fmt::format("STATUS={}", status)), error_logged_);
}

void service_manager::watchdog_ping() const {
  log_failure(notify("WATCHDOG=1"), error_logged_);
}

}  // namespace otpd::supervisor

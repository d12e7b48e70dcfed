#include "notify_socket.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <utility>

#include "cgroup.hpp"
#include <fmt/format.h>

namespace otpd::supervisor::detail {

namespace {

bool key_char(char c, bool first) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
         (!first && c >= '0' && c <= '9');
}

// Digits only, at most what fits: systemd's safe_atou64 without sign or blanks.
std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return std::nullopt;
    }
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

core::Result<notify_message> parse_notify(std::string_view d) {
  if (d.empty()) {
    return {core::errc::malformed, "empty datagram"};
  }
  if (d.size() > notify_max_datagram) {
    return {core::errc::too_large,
            fmt::format("{} bytes, more than {}", d.size(), notify_max_datagram)};
  }
  if (d.find('\0') != std::string_view::npos) {
    return {core::errc::malformed, "a NUL byte in it"};
  }
  notify_message m;
  std::size_t at = 0;
  int line_no = 0;
  while (at < d.size()) {
    std::size_t nl = d.find('\n', at);
    std::string_view line = d.substr(at, nl == std::string_view::npos ? nl : nl - at);
    at = nl == std::string_view::npos ? d.size() : nl + 1;
    ++line_no;
    if (line.empty()) {
      // libsystemd ends no line with '\n', but a hand-written sender
      // (printf 'READY=1\n') does: an empty line is no assignment.
      continue;
    }
    std::size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return {core::errc::malformed, fmt::format("line {} is no KEY=VALUE", line_no)};
    }
    std::string_view key = line.substr(0, eq);
    std::string_view value = line.substr(eq + 1);
    for (std::size_t i = 0; i < key.size(); ++i) {
      if (!key_char(key[i], i == 0)) {
        return {core::errc::malformed, fmt::format("line {}: not a key", line_no)};
      }
    }
    auto bad = [&] { m.bad.push_back(clean_text(line, 80)); };
    if (key == "READY") {
      value == "1" ? void(m.ready = true) : bad();
    } else if (key == "RELOADING") {
      value == "1" ? void(m.reloading = true) : bad();
    } else if (key == "STOPPING") {
      value == "1" ? void(m.stopping = true) : bad();
    } else if (key == "BARRIER") {
      value == "1" ? void(m.barrier = true) : bad();
    } else if (key == "WATCHDOG") {
      if (value == "1") {
        m.watchdog_ping = true;
      } else if (value == "trigger") {
        m.watchdog_trigger = true;
      } else {
        bad();
      }
    } else if (key == "STATUS") {
      m.status = clean_text(value);
    } else if (key == "ERRNO") {
      auto v = parse_u64(value);
      v&&* v <= static_cast<std::uint64_t>(INT_MAX) ? void(m.errno_value = static_cast<int>(*v))
                                                    : bad();
    } else if (key == "WATCHDOG_USEC") {
      auto v = parse_u64(value);
      v ? void(m.watchdog_usec = *v) : bad();
    } else if (key == "EXTEND_TIMEOUT_USEC") {
      auto v = parse_u64(value);
      v ? void(m.extend_timeout_usec = *v) : bad();
    } else if (key == "MAINPID") {
      m.mainpid = clean_text(value, 32);
    } else if (m.ignored.size() < 16) {
      m.ignored.emplace_back(key);
    }
  }
  return m;
}

std::string clean_text(std::string_view s, std::size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max));
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    }
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xC0u) == 0x80u;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    ok = ok && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
         !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) {
      len = 1;
    }
    // C0 and C1 controls and DEL: a terminal acts on them.
    bool control = cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
    std::size_t put = ok && !control ? len : 1;
    if (out.size() + put > max) {
      break;
    }
    if (ok && !control) {
      out.append(s.substr(i, len));
    } else {
      out.push_back('?');
    }
    i += len;
  }
  return out;
}

bool log_budget::allow(std::int64_t now_ms, std::uint64_t* skipped) {
  if (window_start_ < 0 || now_ms - window_start_ >= window_ms_) {
    window_start_ = now_ms;
    used_ = 0;
  }
  if (used_ >= lines_) {
    ++skipped_;
    return false;
  }
  ++used_;
  if (skipped != nullptr) {
    *skipped = std::exchange(skipped_, 0);
  }
  return true;
}

// ---- the socket ---------------------------------------------------------------------

core::Result<std::unique_ptr<notify_socket>> notify_socket::open(uv_loop_t* loop,
                                                                 const std::string& runtime_dir,
                                                                 on_datagram cb) {
  std::unique_ptr<notify_socket> s(new notify_socket());
  s->cb_ = std::move(cb);
  s->fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s->fd_) {
    return {core::errno_code(), fmt::format("socket: {}", std::strerror(errno))};
  }
  int on = 1;
  if (::setsockopt(s->fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return {core::errno_code(), fmt::format("SO_PASSCRED: {}", std::strerror(errno))};
  }
  std::string hash = hash_hex(runtime_dir);
  int err = 0;
  // A name taken already (by a guess, or by chance) is tried again with
  // another random part.
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::uint64_t rnd = 0;
    if (::getrandom(&rnd, sizeof rnd, 0) != static_cast<ssize_t>(sizeof rnd)) {
      return {core::errno_code(), fmt::format("getrandom: {}", std::strerror(errno))};
    }
    std::string name = fmt::format("@otpd-notify-{}-{:016x}", hash, rnd);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, name.data(), name.size());
    sa.sun_path[0] = '\0';
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (::bind(s->fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0) {
      s->address_ = std::move(name);
      break;
    }
    err = errno;
    if (err != EADDRINUSE) {
      break;
    }
  }
  if (s->address_.empty()) {
    return {core::errno_code(err), fmt::format("bind: {}", std::strerror(err))};
  }
  if (auto w = s->watch(loop); !w) {
    return w.fail();
  }
  return core::Result<std::unique_ptr<notify_socket>>(std::move(s));
}

core::Result<std::unique_ptr<notify_socket>> notify_socket::adopt(uv_loop_t* loop,
                                                                  core::unique_fd fd,
                                                                  std::string address,
                                                                  on_datagram cb) {
  std::unique_ptr<notify_socket> s(new notify_socket());
  s->cb_ = std::move(cb);
  s->fd_ = std::move(fd);
  s->address_ = std::move(address);
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(s->fd_.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM) {
    return {core::errc::invalid_argument, "the handed-over notify socket is not a datagram socket"};
  }
  int fl = ::fcntl(s->fd_.get(), F_GETFD);
  int st = ::fcntl(s->fd_.get(), F_GETFL);
  if (fl < 0 || st < 0 || ::fcntl(s->fd_.get(), F_SETFD, fl | FD_CLOEXEC) != 0 ||
      ::fcntl(s->fd_.get(), F_SETFL, st | O_NONBLOCK) != 0) {
    return {core::errno_code(), fmt::format("fcntl: {}", std::strerror(errno))};
  }
  if (auto w = s->watch(loop); !w) {
    return w.fail();
  }
  return core::Result<std::unique_ptr<notify_socket>>(std::move(s));
}

core::Result<void> notify_socket::watch(uv_loop_t* loop) {
  poll_ = uv::handle<uv_poll_t>::make();
  if (int r = uv_poll_init(loop, poll_.get(), fd_.get()); r != 0) {
    poll_.discard();
    return {core::errno_code(-r), fmt::format("uv_poll_init: {}", uv_strerror(r))};
  }
  poll_.get()->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* h, int status, int) {
    if (status == 0) {
      static_cast<notify_socket*>(h->data)->on_readable();
    }
  });
  return {};
}

void notify_socket::on_readable() {
  for (int i = 0; i < max_per_wakeup; ++i) {
    notify_datagram d;
    if (receive(d) <= 0) {
      return;  // nothing queued; an error of recvmsg leaves the socket to the next wake-up
    }
    cb_(d);
  }
}

int notify_socket::receive(notify_datagram& out) {
  // One byte more than the largest datagram: with MSG_TRUNC recvmsg returns
  // the datagram's real length anyway.
  char buf[notify_max_datagram + 1];
  // Credentials, and room for the most fds a datagram can carry (SCM_MAX_FD,
  // 253): fds that do not fit would be discarded by the kernel, but those
  // that do are installed in otpd, and closed below.
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 253)];
  iovec iov{buf, sizeof buf};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctrl;
  m.msg_controllen = sizeof ctrl;
  ssize_t n;
  do {
    n = ::recvmsg(fd_.get(), &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET) {
      continue;
    }
    if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      ucred u{};
      std::memcpy(&u, CMSG_DATA(c), sizeof u);
      out.pid = u.pid;
      out.uid = u.uid;
      out.gid = u.gid;
      out.has_creds = true;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      // otpd keeps no fd a child sends (no fd store): each is closed at
      // once. Closing is also the answer to BARRIER=1, whose sender waits
      // for the other end of the pipe it sent to close.
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t k = 0; k < count; ++k) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
        if (fd >= 0) {
          ::close(fd);
          ++out.fds;
        }
      }
    }
  }
  out.oversized =
      static_cast<std::size_t>(n) > notify_max_datagram || (m.msg_flags & MSG_TRUNC) != 0;
  if (!out.oversized) {
    out.data.assign(buf, static_cast<std::size_t>(n));
  } else {
    out.data.clear();
  }
  return 1;
}

}  // namespace otpd::supervisor::detail

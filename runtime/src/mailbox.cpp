// Mailbox I/O: the send path (connections to other mailboxes, framing,
// backpressure) and the receive path (accepting senders, parsing frames,
// checking each envelope's sender, the queue and the receive loop). The event
// loop (pump) lives here too and hands the fds of the other units to them.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "detail.hpp"
#include "wire.hpp"

#include <otpd/core/log.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

namespace detail {

namespace {

constexpr std::size_t read_chunk = std::size_t{256} * 1024;
constexpr std::size_t post_flush_threshold = std::size_t{64} * 1024;
constexpr std::size_t max_out_connections = 512;

Result<void> set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_code();
  }
  return {};
}

}  // namespace

// --- sending ----------------------------------------------------------------

// Called only by send(), once per message: `inline` lets the compiler fold it
// in, as it did when this unit was part of process.cpp.
inline Result<pid_t> context::resolve(const address& to) {
  if (to.is_pid()) {
    return to.pid();
  }
  if (auto it = name_cache_.find(to.name()); it != name_cache_.end()) {
    return it->second;
  }
  auto pid = whereis(to.name());
  if (pid) {
    name_cache_[to.name()] = *pid;
  }
  return pid;
}

// A new connection to pid's mailbox (send() reuses the one it has).
Result<out_conn*> context::connect_to(pid_t pid, deadline until) {
  if (out_.size() >= max_out_connections) {
    // Bound our fds: drop an idle connection (flushed first).
    for (auto it = out_.begin(); it != out_.end(); ++it) {
      if (it->second.pending.empty()) {
        out_.erase(it);
        break;
      }
    }
  }
  auto sa = unix_address(mbox_path(pid));
  if (!sa) {
    return errc::too_large;
  }
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return errno_code();
  }
  // A blocking connect to a Unix socket waits while the receiver's accept
  // backlog is full, bounded by SO_SNDTIMEO: the deadline, not forever.
  int ms = until.poll_timeout_ms();
  if (ms >= 0) {
    timeval tv{ms / 1000, static_cast<suseconds_t>(ms % 1000) * 1000};
    if (ms == 0) {
      tv.tv_usec = 1000;
    }
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&*sa), sizeof *sa);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int e = errno;
    if (e == ENOENT || e == ECONNREFUSED || e == ENOTSOCK) {
      return errc::noproc;
    }
    if (e == EAGAIN || e == EINPROGRESS || e == ETIMEDOUT) {
      return errc::timeout;
    }
    return errno_code(e);
  }
  if (auto r = set_nonblocking(fd.get()); !r) {
    return r.error();
  }
  auto [it, ok] = out_.emplace(pid, out_conn{std::move(fd), {}});
  return &it->second;
}

// Writes everything pending on c. A frame cut by a deadline would corrupt
// the stream, so on timeout the connection is dropped: the receiver discards
// the partial frame, and the caller learns that the message did not go.
Result<void> context::write_out(pid_t pid, out_conn& c, deadline until) {
  std::size_t off = 0;
  while (off < c.pending.size()) {
    ssize_t n = ::send(c.fd.get(), c.pending.data() + off, c.pending.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      // The receiver is full: wait for room, but keep taking in our own
      // mailbox meanwhile, so two processes sending to each other cannot
      // deadlock on full buffers.
      pollfd fds[2] = {{c.fd.get(), POLLOUT, 0}, {epoll_.get(), POLLIN, 0}};
      int ms = until.poll_timeout_ms();
      if (ms == 0) {
        drop_out(pid);
        return errc::timeout;
      }
      int nfds = epoll_ ? 2 : 1;
      if (::poll(fds, static_cast<nfds_t>(nfds), ms) < 0 && errno != EINTR) {
        auto ec = errno_code();
        drop_out(pid);
        return ec;
      }
      if (nfds == 2 && (fds[1].revents & POLLIN) != 0) {
        pump(0);
      }
      continue;
    }
    // EPIPE / ECONNRESET: the receiver is gone.
    drop_out(pid);
    return errc::noproc;
  }
  c.pending.clear();
  return {};
}

Result<void> context::send(const address& to, kind k, const ref& r, std::string_view body,
                           deadline until, bool buffered) {
  if (auto i = ensure_dir(); !i) {
    return i;
  }
  if (body.size() > wire::max_body) {
    return errc::too_large;
  }
  // A post carries no deadline (never() marks that); take the default one
  // only when the post has to connect or write.
  const bool lazy = buffered && until.is_never();
  auto effective = [&] { return lazy ? deadline::after(default_send_timeout) : until; };
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto pid = resolve(to);
    if (!pid) {
      return pid.error();
    }
    out_conn* conn = nullptr;
    if (auto it = out_.find(*pid); it != out_.end()) {
      conn = &it->second;
    } else {
      auto opened = connect_to(*pid, effective());
      if (!opened) {
        if (opened.error() == errc::noproc && !to.is_pid() && attempt == 0) {
          name_cache_.erase(to.name());  // the name may have moved: look again
          continue;
        }
        return opened.error();
      }
      conn = *opened;
    }
    out_conn& c = *conn;
    wire::append_frame(c.pending, wire::make_header(k, self_, r, body.size()), body);
    if (buffered && c.pending.size() < post_flush_threshold) {
      return {};
    }
    auto w = write_out(*pid, c, effective());
    if (!w && w.error() == errc::noproc && !to.is_pid() && attempt == 0) {
      name_cache_.erase(to.name());
      continue;
    }
    return w;
  }
  return errc::noproc;
}

Result<void> context::flush_all(deadline until) {
  Result<void> result;
  std::vector<pid_t> pids;
  for (auto& [pid, c] : out_) {
    if (!c.pending.empty()) {
      pids.push_back(pid);
    }
  }
  for (pid_t pid : pids) {
    auto it = out_.find(pid);
    if (it == out_.end()) {
      continue;
    }
    if (auto w = write_out(pid, it->second, until); !w) {
      result = w;
    }
  }
  return result;
}

// --- receiving --------------------------------------------------------------

void context::close_conn(int fd, const char* why) {
  auto it = in_.find(fd);
  if (it == in_.end()) {
    return;
  }
  if (why != nullptr) {
    core::log_warn("mailbox: dropping connection from pid {}: {}", it->second.peer, why);
  }
  unwatch_fd(fd);
  in_.erase(it);
}

void context::accept_all() {
  while (true) {
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      if (errno == EMFILE || errno == ENFILE) {
        core::log_error("mailbox: unable to accept a connection: {}; retrying later",
                        std::strerror(errno));
      }
      return;
    }
    unique_fd conn(fd);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      continue;
    }
    if (!watch_fd(tag::conn, fd, EPOLLIN | EPOLLRDHUP)) {
      continue;
    }
    in_conn& c = in_[fd];
    c.fd = std::move(conn);
    c.peer = cred.pid;
  }
}

// Parses whole frames from c.buf into the queue. False when the stream is
// broken (the caller closes the connection).
bool context::parse_frames(in_conn& c) {
  while (true) {
    auto f = wire::next_frame({c.buf.data() + c.start, c.end - c.start});
    if (f.status == wire::cut::broken) {
      close_conn(c.fd.get(), f.why);
      return false;
    }
    if (f.status == wire::cut::need_more) {
      break;
    }
    const wire::header& h = f.h;
    std::string_view body = f.body;
    c.start += sizeof h + h.body_len;
    // One connection carries one sender: an envelope claiming another pid is
    // a forgery or a bug; drop that message and keep the stream.
    if (h.from != c.peer) {
      core::log_warn("mailbox: dropped a message from pid {} claiming to be pid {}", c.peer,
                     h.from);
      continue;
    }
    if (!is_valid_term(body)) {
      core::log_warn("mailbox: dropped a malformed {} message from pid {} ({} bytes)",
                     to_string(static_cast<kind>(h.kind)), c.peer, h.body_len);
      continue;
    }
    message m{static_cast<kind>(h.kind), h.from, ref{h.ref_hi, h.ref_lo}, std::string(body)};
    if (m.kind == kind::link || m.kind == kind::unlink) {
      handle_control(m);
      continue;
    }
    if (m.kind == kind::reply && !abandoned_.empty() && abandoned_.erase(m.ref) > 0) {
      continue;  // a reply that came after its caller gave up
    }
    queue_.push_back(std::move(m));
  }
  if (c.start == c.end) {
    c.start = 0;
    c.end = 0;
  } else if (c.start > read_chunk) {
    std::memmove(c.buf.data(), c.buf.data() + c.start, c.end - c.start);
    c.end -= c.start;
    c.start = 0;
  }
  return true;
}

void context::read_conn(int fd) {
  auto it = in_.find(fd);
  if (it == in_.end()) {
    return;
  }
  in_conn& c = it->second;
  while (true) {
    if (c.buf.size() < c.end + read_chunk) {
      c.buf.resize(c.end + read_chunk);
    }
    ssize_t n = ::read(fd, c.buf.data() + c.end, read_chunk);
    if (n > 0) {
      c.end += static_cast<std::size_t>(n);
      if (!parse_frames(c)) {
        return;  // closed
      }
      if (static_cast<std::size_t>(n) < read_chunk) {
        return;  // drained for now
      }
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      return;
    }
    // EOF or error: the sender closed (or died). A partial frame left over
    // was cut off mid-write; it is dropped.
    close_conn(fd, c.end > c.start ? "closed in the middle of a frame" : nullptr);
    return;
  }
}

int context::pump(int timeout_ms) {
  if (!epoll_) {
    return 0;
  }
  epoll_event evs[64];
  int n;
  do {
    n = ::epoll_wait(epoll_.get(), evs, 64, timeout_ms);
  } while (n < 0 && errno == EINTR);
  for (int i = 0; i < n; ++i) {
    auto t = static_cast<tag>(evs[i].data.u64 >> 56);
    int fd = static_cast<int>(evs[i].data.u64 & 0xffffffffu);
    switch (t) {
      case tag::listen:
        accept_all();
        break;
      case tag::conn:
        read_conn(fd);
        break;
      case tag::pidfd:
        if (auto it = pidfd_owner_.find(fd); it != pidfd_owner_.end()) {
          on_pid_exit(it->second);
        }
        break;
      case tag::signal:
        read_signals(fd);
        break;
      case tag::timer:
        fire_timers();
        break;
    }
  }
  return n < 0 ? 0 : n;
}

Result<message> context::receive(const predicate* pred, deadline until) {
  if (auto i = ensure_init(); !i) {
    return i.error();
  }
  (void)flush_all(until);
  std::size_t scanned = 0;
  auto take = [&]() -> std::optional<message> {
    for (; scanned < queue_.size(); ++scanned) {
      if (pred == nullptr || (*pred)(queue_[scanned])) {
        message m = std::move(queue_[scanned]);
        queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(scanned));
        return m;
      }
    }
    return std::nullopt;
  };
  if (auto m = take()) {
    return std::move(*m);
  }
  pump(0);
  if (auto m = take()) {
    return std::move(*m);
  }
  // Spin briefly before sleeping: waking a halted vCPU costs tens of µs here.
  if (spin_.count() > 0 && !until.expired()) {
    auto spin_end = core::clock::now() + spin_;
    if (spin_end > until.at()) {
      spin_end = until.at();
    }
    while (core::clock::now() < spin_end) {
      if (pump(0) > 0) {
        if (auto m = take()) {
          return std::move(*m);
        }
      }
    }
  }
  while (true) {
    int ms = until.poll_timeout_ms();
    if (ms == 0) {
      pump(0);
      if (auto m = take()) {
        return std::move(*m);
      }
      return errc::timeout;
    }
    auto slept_from = core::clock::now();
    if (pump(ms) > 0) {
      if (auto m = take()) {
        // Adapt: had the message come within the spin window, spinning would
        // have caught it cheaper; otherwise spin less next time.
        auto waited = core::clock::now() - slept_from;
        if (waited < max_spin_) {
          spin_ = max_spin_;
        } else {
          spin_ /= 2;
        }
        return std::move(*m);
      }
    }
  }
}

Result<void> context::set_signal_fd(int fd) {
  if (auto i = ensure_init(); !i) {
    return i;
  }
  if (!watch_fd(tag::signal, fd)) {
    return errno_code();
  }
  return {};
}

// Signals as messages: a signalfd's signals arrive as kind::system messages
// ["signal", signo] from pid 0, handled in order with everything else.
void context::read_signals(int fd) {
  signalfd_siginfo si{};
  while (::read(fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    enqueue({kind::system, 0, {}, pack(std::tuple<std::string, int>("signal", si.ssi_signo))});
  }
}

}  // namespace detail

// --- the public API ---------------------------------------------------------

using detail::ctx;

Result<void> send_message(const address& to, kind k, const ref& r, std::string_view body,
                          deadline until) {
  return ctx().send(to, k, r, body, until, false);
}
Result<void> post_message(const address& to, kind k, const ref& r, std::string_view body) {
  // never() is a marker here: the real deadline is taken only if the post
  // has to write, which keeps a clock read off the per-message path.
  return ctx().send(to, k, r, body, deadline::never(), true);
}
Result<void> flush(deadline until) {
  return ctx().flush_all(until);
}

Result<message> receive(deadline until) {
  return ctx().receive(nullptr, until);
}
Result<message> receive(const predicate& pred, deadline until) {
  return ctx().receive(&pred, until);
}
Result<message> receive_ref(const ref& r, deadline until) {
  predicate p = [&r](const message& m) { return m.ref == r; };
  return ctx().receive(&p, until);
}
std::size_t queued() {
  (void)ctx().ensure_init();
  return ctx().queued();
}
int event_fd() {
  (void)ctx().ensure_init();
  return ctx().event_fd();
}
void dispatch_pending() {
  ctx().dispatch_pending();
}
void set_max_spin(std::chrono::microseconds max) {
  ctx().set_max_spin(max);
}

}  // namespace otpd::runtime

// Mailbox I/O: the send path (connections to other mailboxes, framing,
// backpressure) and the receive path (accepting senders, parsing frames,
// checking each envelope's sender, the queue and the receive loop), on the
// socket and on the shared-memory ring beside it (ring.hpp has its protocol). The event
// loop (pump) lives here too and hands the fds of the other units to them.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
// A connection's receive buffer: room for two reads before it is replaced
// or reused.
constexpr std::size_t rx_block = 2 * read_chunk;
// Up to this, the unparsed rest of a read is moved to the front of the block.
constexpr std::size_t small_rest = std::size_t{16} * 1024;
// A block with less room than this left is not read into.
constexpr std::size_t min_read = std::size_t{64} * 1024;
constexpr std::size_t post_flush_threshold = std::size_t{64} * 1024;
constexpr std::size_t max_out_connections = 512;
// Posts into a ring are published at least this often (and at every flush).
constexpr std::uint64_t publish_batch = std::uint64_t{16} * 1024;
// A sender facing a full ring polls it this long before it sleeps: the
// receiver is the slower side then, and a spinning sender only takes CPU
// from it when they share a core.
constexpr std::chrono::microseconds full_ring_spin{5};
// A receiver takes about this much from one ring per call, then turns to
// the others and to the epoll set: a full ring is one round of the program's
// receives behind, not the whole ring, so a sender waiting for room gets it
// in steps (and the queue holds at most a batch per ring more than the
// program asked for).
constexpr std::uint64_t consume_batch = std::uint64_t{64} * 1024;
// A receive that finds messages in the rings looks at the epoll set (sockets,
// pidfds, timers) at least once per this many ring bytes taken: peers that
// keep the rings busy must not starve a socket peer, whose ring request,
// ring start or wake-up waits there, nor a DOWN. One epoll_wait per 64 KiB
// is under a nanosecond per message.
constexpr std::uint64_t epoll_budget = std::uint64_t{64} * 1024;
// While rings are open, a receive that finds them empty looks at the epoll
// set at most this often before it sleeps there (a socket peer's message
// waits at most this long for a spinning receiver).
constexpr std::chrono::microseconds epoll_interval{10};

// The received bytes of c not parsed yet.
std::string_view unparsed(const in_conn& c) {
  return c.end == c.start ? std::string_view{}
                          : std::string_view{c.rx.data() + c.start, c.end - c.start};
}

// Room to read into after c.end; returns how many bytes to read (at most
// read_chunk). The bytes before c.end may be viewed by bodies still queued
// or held by the program: they are overwritten (the unparsed rest moved to
// the front) only when no body views the block. Otherwise the next read goes
// into what is left of the block, and then into the connection's spare
// block once its bodies are gone, or a new one: the old block stays the
// spare, alive as long as its bodies. Steady traffic thus reads into two
// blocks in turn and allocates nothing.
std::size_t make_room(in_conn& c) {
  const std::size_t rest = c.end - c.start;
  if (c.rx && c.rx.sole() && rest == 0 && c.rx.capacity() > rx_block) {
    // A large frame is all taken in: the grown block goes, so that one large
    // message does not keep megabytes per connection for good.
    c.rx = c.spare && c.spare.sole() && c.spare.capacity() == rx_block ? std::move(c.spare)
                                                                       : block_ref(rx_block);
    c.start = c.end = 0;
  }
  if (c.rx && c.rx.sole()) {
    if (rest == 0) {
      c.start = c.end = 0;  // the common case: all parsed, reuse from the front
    } else if (c.start > 0 && (rest <= small_rest || c.rx.capacity() - c.end < read_chunk)) {
      // A frame cut by the last read: moved to the front, so that reads
      // keep to the same, cache-warm, start of the block.
      std::memmove(c.rx.data(), c.rx.data() + c.start, rest);
      c.start = 0;
      c.end = rest;
    }
  }
  if (c.rx.capacity() - c.end >= min_read) {
    return std::min(read_chunk, c.rx.capacity() - c.end);
  }
  std::size_t need = std::max(rx_block, rest + read_chunk);
  if (need > rx_block) {
    need = std::max(need, 2 * c.rx.capacity());  // a large frame: grow geometrically
  }
  block_ref next;
  if (c.spare && c.spare.sole() && c.spare.capacity() >= need) {
    next = std::move(c.spare);
  } else {
    next = block_ref(need);
  }
  if (rest > 0) {
    std::memcpy(next.data(), c.rx.data() + c.start, rest);
  }
  if (c.rx.capacity() == rx_block) {
    c.spare = std::move(c.rx);  // releases the previous spare
  }
  c.rx = std::move(next);  // releases a grown block (orphaned if bodies view it)
  c.start = 0;
  c.end = rest;
  return std::min(read_chunk, c.rx.capacity() - c.end);
}

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
      if (it->second.pending.empty() && !it->second.dirty) {
        out_.erase(it);
        last_out_ = nullptr;
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
  auto [it, ok] = out_.emplace(pid, out_conn{});
  out_conn& c = it->second;
  c.fd = std::move(fd);
  if (ring_enabled_ && pid != self_) {
    // Ask for a ring; it goes out with the first write, and the answer is
    // picked up by a later one (check_offer).
    wire::header h = wire::make_header(kind::user, self_, {}, 0);
    h.flags = ring::flag_ring_request;
    wire::append_frame(c.pending, h, {});
    c.state = out_conn::ring_state::asked;
  }
  return &c;
}

// The receiver's answer to our ring request, if it has come: a memfd to map
// ('R'), or 'N'. Until then we stay on the socket.
void context::check_offer(pid_t pid, out_conn& c) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = ::recvmsg(c.fd.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    return;  // not yet (or the receiver is gone: the write will say so)
  }
  // Keep the first fd passed, close any other a hostile receiver stuffed in.
  unique_fd memfd;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      if (!memfd) {
        memfd.reset(fd);
      } else {
        ::close(fd);
      }
    }
  }
  c.state = out_conn::ring_state::off;
  if (byte != ring::offer_ring || !memfd) {
    return;  // refused: the socket it is
  }
  auto m = ring::mapping::attach(memfd.get());
  if (!m) {
    core::log_warn("mailbox: not using the ring offered by pid {}: {}", pid, m.error().message());
    return;
  }
  c.ring = std::move(*m);
  c.tail = 0;
  c.published = 0;
  c.head_seen = 0;
  c.state = out_conn::ring_state::on;
  // What is pending on the socket comes first; then the receiver turns to the ring.
  wire::header h = wire::make_header(kind::user, self_, {}, 0);
  h.flags = ring::flag_ring_start;
  wire::append_frame(c.pending, h, {});
}

// Writes everything pending on c. A frame cut by a deadline would corrupt
// the stream, so on timeout the connection is dropped: the receiver discards
// the partial frame, and the caller learns that the message did not go.
Result<void> context::write_out(pid_t pid, out_conn& c, deadline until) {
  if (c.state == out_conn::ring_state::asked) {
    check_offer(pid, c);
  }
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
        // pump() may have seen pid end and dropped this connection.
        if (auto it = out_.find(pid); it == out_.end() || &it->second != &c) {
          return errc::noproc;
        }
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

// A sleeping receiver has announced it in the ring: wake it with a frame on
// the socket. Called after publishing (send) or once per batch (post).
Result<void> context::wake_reader(pid_t pid, out_conn& c) {
  publish(c);
  c.unwoken = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto& sleeps = c.ring.ctl()->reader_sleeps;
  if (sleeps.load(std::memory_order_relaxed) == 0 ||
      sleeps.exchange(0, std::memory_order_acq_rel) == 0) {
    return {};
  }
  wire::header h = wire::make_header(kind::user, self_, {}, 0);
  h.flags = ring::flag_wake;
  wire::append_frame(c.pending, h, {});
  // One try: if the socket is full, the receiver has bytes to read and its
  // epoll fires anyway; the rest goes with the next flush.
  ssize_t n = ::send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && errno != EAGAIN && errno != EINTR) {
    drop_out(pid);
    return errc::noproc;
  }
  if (n > 0) {
    c.pending.erase(0, static_cast<std::size_t>(n));
  }
  if (!c.pending.empty()) {
    mark_dirty(pid, c);
  }
  return {};
}

// Copies one frame into the ring and publishes it, first waiting for room
// (until the deadline: then nothing was written and the connection stays).
// cp is updated if waiting let pump() run; on error it may be gone.
Result<void> context::ring_put(pid_t pid, out_conn*& cp, const wire::header& h,
                               std::string_view body, deadline until, bool post) {
  out_conn* c = cp;
  const std::size_t need = sizeof h + body.size();
  const std::size_t cap = c->ring.capacity();
  if (cap - (c->tail - c->head_seen) < need) {
    // 1: room; 0: none yet; -1: the receiver wrote an impossible head.
    auto load_room = [&]() -> int {
      std::uint64_t head = c->ring.ctl()->head.load(std::memory_order_acquire);
      std::size_t free = 0;
      if (!ring::room(c->tail, head, cap, free)) {
        return -1;
      }
      c->head_seen = head;
      return free >= need ? 1 : 0;
    };
    auto relookup = [&]() -> bool {
      auto it = out_.find(pid);
      if (it == out_.end() || &it->second != c) {
        return false;
      }
      cp = c;
      return true;
    };
    int st = load_room();
    if (st == 0) {
      if (post && until.is_never()) {
        until = deadline::after(default_send_timeout);
      }
      // The receiver may be asleep on a full ring, or stuck on a frame we
      // still hold: both must go before we wait.
      if (auto w = wake_reader(pid, *c); !w) {
        return w;
      }
      if (!c->pending.empty()) {
        if (auto w = write_out(pid, *c, until); !w) {
          return w;
        }
        if (!relookup()) {
          return errc::noproc;
        }
      }
      auto spin_end = core::clock::now() + std::min(max_spin_, full_ring_spin);
      while (st == 0 && core::clock::now() < spin_end) {
        st = load_room();
      }
      while (st == 0) {
        c->ring.ctl()->writer_waits.store(1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (st = load_room(); st != 0) {
          break;
        }
        int ms = until.poll_timeout_ms();
        if (ms == 0) {
          return errc::timeout;
        }
        pollfd fds[2] = {{c->fd.get(), POLLIN, 0}, {epoll_.get(), POLLIN, 0}};
        int nfds = epoll_ ? 2 : 1;
        if (::poll(fds, static_cast<nfds_t>(nfds), ms) < 0 && errno != EINTR) {
          auto ec = errno_code();
          drop_out(pid);
          return ec;
        }
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          // 'W' bytes, or the receiver's end.
          char junk[64];
          ssize_t n = ::recv(c->fd.get(), junk, sizeof junk, MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop_out(pid);
            return errc::noproc;
          }
        }
        if (nfds == 2 && (fds[1].revents & POLLIN) != 0) {
          pump(0);
          if (!relookup()) {
            return errc::noproc;
          }
        }
        st = load_room();
      }
    }
    if (st < 0) {
      core::log_warn("mailbox: dropping the connection to pid {}: its ring's head is out of range",
                     pid);
      drop_out(pid);
      return errc::noproc;
    }
  }
  char* p = c->ring.data() + (c->tail & (cap - 1));
  std::memcpy(p, &h, sizeof h);
  if (!body.empty()) {
    std::memcpy(p + sizeof h, body.data(), body.size());
  }
  c->tail += need;  // published by the caller
  return {};
}

// One message on a connection that has its ring: small bodies into the ring,
// large ones on the socket behind a marker in the ring that keeps the order.
Result<void> context::send_ring(pid_t pid, out_conn*& c, const wire::header& h,
                                std::string_view body, deadline until, bool post) {
  if (body.size() <= ring::max_body) {
    if (auto w = ring_put(pid, c, h, body, until, post); !w) {
      return w;
    }
    c->unwoken += sizeof h + body.size();
    if (!post || c->unwoken >= post_flush_threshold) {
      return wake_reader(pid, *c);  // publishes
    }
    // Posts are published in batches: a receiver polling the ring then
    // takes many at once, and the tail's cache line moves once per batch.
    if (c->tail - c->published >= publish_batch) {
      publish(*c);
    }
    mark_dirty(pid, *c);
    return {};
  }
  wire::header marker = wire::make_header(kind::user, self_, {}, 0);
  marker.flags = ring::flag_on_socket;
  if (auto w = ring_put(pid, c, marker, {}, until, post); !w) {
    return w;
  }
  publish(*c);  // before the frame: the receiver must find the marker first
  // The frame on the socket wakes the receiver, which then reads the ring
  // up to the marker and takes this frame.
  wire::append_frame(c->pending, h, body);
  if (post && until.is_never()) {
    until = deadline::after(default_send_timeout);
  }
  return write_out(pid, *c, until);
}

bool context::post_fast(pid_t pid, kind k, const ref& r, std::string_view body) {
  out_conn* c = last_out_;
  if (c == nullptr || pid != last_pid_ || c->state != out_conn::ring_state::on ||
      g_forked.load(std::memory_order_relaxed)) {
    return false;
  }
  const std::size_t need = sizeof(wire::header) + body.size();
  const std::size_t cap = c->ring.capacity();
  if (body.size() > ring::max_body || cap - (c->tail - c->head_seen) < need ||
      c->unwoken + need >= post_flush_threshold || c->tail + need - c->published >= publish_batch) {
    return false;
  }
  char* p = c->ring.data() + (c->tail & (cap - 1));
  wire::store_header(p, k, self_, r, body.size());
  std::memcpy(p + sizeof(wire::header), body.data(), body.size());
  c->tail += need;
  c->unwoken += need;
  mark_dirty(pid, *c);
  return true;
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
    out_conn* c = nullptr;
    if (auto it = out_.find(*pid); it != out_.end()) {
      c = &it->second;
    } else {
      auto opened = connect_to(*pid, effective());
      if (!opened) {
        if (opened.error() == errc::noproc && !to.is_pid() && attempt == 0) {
          name_cache_.erase(to.name());  // the name may have moved: look again
          continue;
        }
        return opened.error();
      }
      c = *opened;
    }
    last_pid_ = *pid;
    last_out_ = c;
    const wire::header h = wire::make_header(k, self_, r, body.size());
    Result<void> w;
    if (c->state == out_conn::ring_state::on) {
      w = send_ring(*pid, c, h, body, until, buffered);
    } else {
      wire::append_frame(c->pending, h, body);
      if (buffered && c->pending.size() < post_flush_threshold) {
        mark_dirty(*pid, *c);
        return {};
      }
      w = write_out(*pid, *c, effective());
    }
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
  if (dirty_.empty()) {
    return result;
  }
  // Swapped out: what is flushed may mark connections dirty again.
  std::vector<pid_t> pids;
  pids.swap(dirty_);
  for (pid_t pid : pids) {
    auto it = out_.find(pid);
    if (it == out_.end() || !it->second.dirty) {
      continue;
    }
    out_conn& c = it->second;
    c.dirty = false;
    if (c.state == out_conn::ring_state::on && c.unwoken > 0) {
      if (auto w = wake_reader(pid, c); !w) {
        result = w;
        continue;
      }
      it = out_.find(pid);
      if (it == out_.end()) {
        continue;
      }
      it->second.dirty = false;
    }
    if (!it->second.pending.empty()) {
      if (auto w = write_out(pid, it->second, until); !w) {
        result = w;
      }
    }
  }
  if (dirty_.empty()) {
    pids.clear();
    dirty_.swap(pids);  // keep the capacity
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
  if (it->second.on_ring) {
    auto r = std::find(rings_.begin(), rings_.end(), &it->second);
    if (r != rings_.end()) {
      *r = rings_.back();
      rings_.pop_back();
    }
  }
  unwatch_fd(fd);
  in_.erase(it);  // unmaps the ring
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

// Answers a ring request: a new ring's memfd with 'R', or 'N' (transport
// off here, or no memory for it).
void context::offer_ring(in_conn& c) {
  char byte = ring::offer_refused;
  unique_fd memfd;
  if (ring_enabled_ && c.peer != self_) {
    auto m = ring::mapping::create(ring::default_capacity, memfd);
    if (m) {
      c.ring = std::move(*m);
      byte = ring::offer_ring;
    } else {
      core::log_warn("mailbox: no ring for the connection from pid {}: {}; using the socket",
                     c.peer, m.error().message());
    }
  }
  iovec iov{&byte, 1};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (memfd) {
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int fd = memfd.get();
    std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    n = ::sendmsg(c.fd.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    c.ring = {};  // the sender never gets it, so never starts it
  }
}

// One frame for the queue, from the socket or the ring. Control frames and
// late replies are handled here. body is already out of reach of the sender
// (a view of our receive buffer, or a copy of ring bytes).
void context::deliver(in_conn& c, const wire::header& h, bytes body) {
  // One connection carries one sender: an envelope claiming another pid is
  // a forgery or a bug; drop that message and keep the stream.
  if (h.from != c.peer) {
    core::log_warn("mailbox: dropped a message from pid {} claiming to be pid {}", c.peer, h.from);
    return;
  }
  const auto k = static_cast<kind>(h.kind);
  if (!is_valid_term(body)) {
    core::log_warn("mailbox: dropped a malformed {} message from pid {} ({} bytes)", to_string(k),
                   c.peer, h.body_len);
    return;
  }
  const ref r{h.ref_hi, h.ref_lo};
  if (k == kind::link || k == kind::unlink) {
    handle_control(message{k, h.from, r, std::move(body)});
    return;
  }
  if (k == kind::reply && !abandoned_.empty() && abandoned_.erase(r) > 0) {
    return;  // a reply that came after its caller gave up
  }
  queue_.push_back(message{k, h.from, r, std::move(body)});
}

// Takes in whatever c's received socket bytes and ring hold, in the sender's
// order: socket frames until the ring starts, then the ring, except for the
// one socket frame each on_socket marker announces. False when the stream
// is broken (the connection is closed, with the reason logged).
bool context::consume(in_conn& c) {
  const int fd = c.fd.get();
  // A bounded batch per call (consume_batch).
  const std::uint64_t head_at_start = c.head;
  while (true) {
    if (!c.on_ring || c.socket_next) {
      auto f = wire::next_frame(unparsed(c));
      if (f.status == wire::cut::broken) {
        close_conn(fd, f.why);
        return false;
      }
      if (f.status == wire::cut::need_more) {
        break;
      }
      const std::size_t body_at = c.start + sizeof f.h;
      c.start = body_at + f.h.body_len;
      const std::uint8_t flags = f.h.flags;
      if ((flags & ring::flag_wake) != 0) {
        continue;
      }
      if ((flags & ring::flag_ring_request) != 0) {
        if (!c.ring && !c.on_ring) {
          offer_ring(c);
        }
        continue;
      }
      if ((flags & ring::flag_ring_start) != 0) {
        if (!c.ring || c.on_ring) {
          close_conn(fd, "ring start without a ring");
          return false;
        }
        c.on_ring = true;
        rings_.push_back(&c);
        if (external_loop_) {
          c.ring.ctl()->reader_sleeps.store(1, std::memory_order_seq_cst);
        }
        continue;
      }
      c.socket_next = false;
      deliver(c, f.h, body_in(c.rx.get(), {c.rx.data() + body_at, f.h.body_len}));
      continue;
    }
    // On the ring.
    if (c.head - head_at_start >= consume_batch) {
      break;
    }
    std::uint64_t tail = c.ring.ctl()->tail.load(std::memory_order_acquire);
    if (tail == c.head) {
      // The sender publishes a marker before it writes a frame on the
      // socket, and we read the socket before loading tail: a whole frame
      // there now that no marker claims breaks the protocol.
      while (true) {
        auto f = wire::next_frame(unparsed(c));
        if (f.status == wire::cut::broken) {
          close_conn(fd, f.why);
          return false;
        }
        if (f.status == wire::cut::need_more) {
          break;
        }
        if ((f.h.flags & ring::flag_wake) == 0) {
          close_conn(fd, "a frame on the socket that the ring did not announce");
          return false;
        }
        c.start += sizeof f.h + f.h.body_len;
      }
      break;
    }
    while (c.head != tail && c.head - head_at_start < consume_batch) {
      auto r = ring::next(c.ring.data(), c.ring.capacity(), c.head, tail);
      if (r.status == ring::read::broken) {
        close_conn(fd, r.why);
        return false;
      }
      c.head += r.size;
      if (r.f.h.flags == ring::flag_on_socket) {
        c.socket_next = true;
        break;
      }
      if (r.f.h.flags != 0) {
        close_conn(fd, "a control frame in the ring");
        return false;
      }
      // Copied before it is checked: ring bytes are shared with the sender,
      // which could change them between a check and a copy.
      deliver(c, r.f.h, c.ring_bodies.copy(r.f.body));
    }
  }
  if (c.head != c.published) {
    // Room for the sender; wake it if it waits for room.
    auto* ctl = c.ring.ctl();
    ctl->head.store(c.head, std::memory_order_release);
    ring_since_epoll_ += c.head - c.published;
    c.published = c.head;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ctl->writer_waits.load(std::memory_order_relaxed) != 0 &&
        ctl->writer_waits.exchange(0, std::memory_order_acq_rel) != 0) {
      char b = ring::room_byte;
      (void)!::send(fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
  }
  return true;
}

// One read (the epoll is level-triggered: what is left fires again once the
// queue had a chance to drain, so the next read can reuse the front of the
// block), or, with all, every byte there is and the end of the stream.
void context::read_conn(int fd, bool all) {
  auto it = in_.find(fd);
  if (it == in_.end()) {
    return;
  }
  in_conn& c = it->second;
  while (true) {
    const std::size_t room = make_room(c);
    ssize_t n = ::read(fd, c.rx.data() + c.end, room);
    if (n > 0) {
      c.end += static_cast<std::size_t>(n);
      if (!consume(c)) {
        return;  // closed
      }
      if (!all || static_cast<std::size_t>(n) < room) {
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
    // EOF or error: the sender closed (or died). What its ring holds came
    // before, all of it (consume takes a bounded batch per call); a partial
    // frame left over was cut off mid-write and is dropped.
    std::uint64_t head;
    do {
      head = c.head;
      if (!consume(c)) {
        return;
      }
    } while (c.head != head);
    const char* why = nullptr;
    if (c.socket_next) {
      why = "closed before the message its ring announced";
    } else if (c.end > c.start) {
      why = "closed in the middle of a frame";
    }
    close_conn(fd, why);
    return;
  }
}

// The rings with published messages, taken in; returns how many had some.
// No syscall: this is what a spinning receive polls.
int context::poll_rings() {
  int got = 0;
  for (std::size_t i = 0; i < rings_.size();) {
    in_conn* c = rings_[i];
    if (c->socket_next || c->ring.ctl()->tail.load(std::memory_order_relaxed) == c->head) {
      ++i;
      continue;
    }
    ++got;
    if (consume(*c)) {
      ++i;  // else closed: rings_[i] is now another connection
    }
  }
  return got;
}

int context::pump(int timeout_ms) {
  if (!epoll_) {
    return 0;
  }
  int got = 0;
  bool announced = false;
  if (external_loop_) {
    // A sender that woke us took the flag (wake_reader): raise it again
    // before looking, so that what is published after this look wakes the
    // outside loop, and what was published before it is seen by it.
    for (in_conn* c : rings_) {
      c->ring.ctl()->reader_sleeps.store(1, std::memory_order_relaxed);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  if (!rings_.empty()) {
    got = poll_rings();
    if (got > 0) {
      timeout_ms = 0;
    } else if (timeout_ms != 0) {
      // About to sleep: say so in every ring, then look once more (a sender
      // that published before seeing the flag did not wake us).
      for (in_conn* c : rings_) {
        c->ring.ctl()->reader_sleeps.store(1, std::memory_order_relaxed);
      }
      std::atomic_thread_fence(std::memory_order_seq_cst);
      announced = true;
      for (in_conn* c : rings_) {
        if (!c->socket_next && c->ring.ctl()->tail.load(std::memory_order_relaxed) != c->head) {
          timeout_ms = 0;
          break;
        }
      }
    }
  }
  epoll_event evs[64];
  int n;
  do {
    n = ::epoll_wait(epoll_.get(), evs, 64, timeout_ms);
  } while (n < 0 && errno == EINTR);
  ring_since_epoll_ = 0;
  last_epoll_ = core::clock::now();
  if (announced) {
    if (!external_loop_) {
      for (in_conn* c : rings_) {
        c->ring.ctl()->reader_sleeps.store(0, std::memory_order_relaxed);
      }
    }
    got += poll_rings();
  }
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
  return (n < 0 ? 0 : n) + got;
}

Result<message> context::receive(const predicate* pred, deadline until) {
  if (auto i = ensure_init(); !i) {
    return i.error();
  }
  (void)flush_all(until);
  std::size_t scanned = 0;
  // The index of the first match in the queue, or -1; messages before it
  // have been looked at and are not looked at again.
  auto find = [&]() -> std::ptrdiff_t {
    for (; scanned < queue_.size(); ++scanned) {
      if (pred == nullptr || (*pred)(queue_[scanned])) {
        return static_cast<std::ptrdiff_t>(scanned);
      }
    }
    return -1;
  };
  if (auto i = find(); i >= 0) {
    return queue_.take(static_cast<std::size_t>(i));
  }
  // The rings first, without a syscall (one costs about a microsecond on a
  // virtual machine, a third of a call's round trip). The epoll set
  // (sockets, pidfds, timers) is looked at by the spin and the sleep below,
  // while spinning at most once per epoll_interval if rings are open; and
  // after every epoll_budget bytes taken from the rings regardless, so that
  // busy rings starve neither a socket peer nor a DOWN.
  auto epoll_due = [&](int got) {
    return ring_since_epoll_ >= epoll_budget ||
           (got == 0 && (rings_.empty() || core::clock::now() - last_epoll_ >= epoll_interval));
  };
  if (!rings_.empty()) {
    poll_rings();
  }
  if (ring_since_epoll_ >= epoll_budget) {
    pump(0);
  }
  if (auto i = find(); i >= 0) {
    return queue_.take(static_cast<std::size_t>(i));
  }
  // Spin briefly before sleeping: waking a halted vCPU costs tens of µs here.
  if (spin_.count() > 0 && !until.expired()) {
    auto spin_end = core::clock::now() + spin_;
    if (spin_end > until.at()) {
      spin_end = until.at();
    }
    while (core::clock::now() < spin_end) {
      int got = rings_.empty() ? 0 : poll_rings();
      if (epoll_due(got)) {
        got += pump(0);
      }
      if (got > 0) {
        if (auto i = find(); i >= 0) {
          return queue_.take(static_cast<std::size_t>(i));
        }
      }
    }
  }
  while (true) {
    int ms = until.poll_timeout_ms();
    if (ms == 0) {
      pump(0);
      if (auto i = find(); i >= 0) {
        return queue_.take(static_cast<std::size_t>(i));
      }
      return errc::timeout;
    }
    auto slept_from = core::clock::now();
    if (pump(ms) > 0) {
      if (auto i = find(); i >= 0) {
        // Adapt: had the message come within the spin window, spinning would
        // have caught it cheaper; otherwise spin less next time.
        auto waited = core::clock::now() - slept_from;
        if (waited < max_spin_) {
          spin_ = max_spin_;
        } else {
          spin_ /= 2;
        }
        return queue_.take(static_cast<std::size_t>(i));
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
  auto& c = ctx();
  if (to.is_pid() && c.post_fast(to.pid(), k, r, body)) {
    return {};
  }
  return c.send(to, k, r, body, deadline::never(), true);
}
Result<void> post_message(const address& to, kind k, const ref& r, std::string_view body,
                          deadline until) {
  return ctx().send(to, k, r, body, until, true);
}
Result<void> flush(deadline until) {
  return ctx().flush_all(until);
}

const char* to_string(transport t) noexcept {
  switch (t) {
    case transport::none:
      return "none";
    case transport::socket:
      return "socket";
    case transport::ring:
      return "ring";
  }
  return "unknown";
}
void set_transport(transport t) {
  ctx().set_transport(t);
}
transport transport_to(pid_t pid) {
  return ctx().transport_to(pid);
}
transport transport_from(pid_t pid) {
  return ctx().transport_from(pid);
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
std::size_t receive_buffer_bytes() {
  return ctx().receive_buffer_bytes();
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

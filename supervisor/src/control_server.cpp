#include "control_server.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <otpd/core/log.hpp>
#include <otpd/protocol/control.hpp>

namespace otpd::supervisor {

using json = nlohmann::json;

namespace {

constexpr std::int64_t sweep_period_ms = 1000;

uv_stream_t* stream_of(const control_conn& c) {
  return reinterpret_cast<uv_stream_t*>(c.pipe.get());
}

// One queued line. Several connections may share one (a broadcast event).
struct write_req {
  uv_write_t req{};
  std::shared_ptr<const std::string> data;
  control_server* server = nullptr;
  std::uint64_t id = 0;
};

// A reply or an event as one line. Strings that are not UTF-8 (a child's
// id is the operator's, a message may quote it) are replaced, not thrown on.
std::shared_ptr<const std::string> line_of(const json& j) {
  return std::make_shared<const std::string>(protocol::dump_json(j) + "\n");
}

}  // namespace

// The listening socket is ours, not a uv_pipe_t's: libuv's own accept loop
// handles EMFILE with its spare fd but then tells nobody, and a failed
// accept must be logged. accept4 on a uv_poll_t, with our own spare fd.
bool control_server::listen(const std::string& path) {
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) {
    core::log_error("otpd: control socket path too long: {}; exiting", path);
    return false;
  }
  ::unlink(path.c_str());  // stale from a dead otpd: we hold the lock
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  // Created 0600 from the start: no window where another user could connect.
  mode_t old = ::umask(0177);
  bool ok = listen_fd_ && ::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::umask(old);
  if (!ok || ::listen(listen_fd_.get(), 128) != 0) {
    core::log_error("otpd: unable to listen on {}: {}; exiting", path, std::strerror(errno));
    return false;
  }
  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  listener_ = uv::handle<uv_poll_t>::make();
  if (int rc = uv_poll_init(loop_, listener_.get(), listen_fd_.get()); rc != 0) {
    listener_.discard();
    core::log_error("otpd: unable to watch {}: {}; exiting", path, uv_strerror(rc));
    return false;
  }
  listener_.get()->data = this;
  pause_timer_ = uv::handle<uv_timer_t>::make();
  uv_timer_init(loop_, pause_timer_.get());
  pause_timer_.get()->data = this;
  sweep_timer_ = uv::handle<uv_timer_t>::make();
  uv_timer_init(loop_, sweep_timer_.get());
  sweep_timer_.get()->data = this;
  watch_listener();
  return true;
}

void control_server::watch_listener() {
  uv_poll_start(listener_.get(), UV_READABLE, [](uv_poll_t* h, int status, int /*events*/) {
    auto* self = static_cast<control_server*>(h->data);
    if (status < 0) {
      self->warn_limited(
          fmt::format("otpd: unable to poll the control socket: {}", uv_strerror(status)));
      self->pause_listener();
      return;
    }
    self->on_acceptable();
  });
}

// Stops accepting for accept_pause_ms: an accept error that persists (no
// memory, no spare fd) must not spin the loop.
void control_server::pause_listener() {
  uv_poll_stop(listener_.get());
  uv_timer_start(
      pause_timer_.get(),
      [](uv_timer_t* t) { static_cast<control_server*>(t->data)->watch_listener(); },
      static_cast<std::uint64_t>(accept_pause_ms), 0);
}

// Accepts every waiting connection. Out of fds (EMFILE, ENFILE), the spare
// fd makes room for one accept at a time: each waiting client gets an error
// line and is closed, so the listener is drained, not spun on, and the
// client learns why.
void control_server::on_acceptable() {
  closed_.clear();
  // A bounded burst: the connections already open get their turn (their
  // requests, their EOFs) before the next one, and the poll calls again.
  for (int burst = 0; burst < accept_burst; ++burst) {
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      on_connection(core::unique_fd(fd));
      continue;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return;
    }
    if (err == EINTR || err == ECONNABORTED) {
      continue;
    }
    warn_limited(fmt::format("otpd: unable to accept a control connection: {}{}",
                             std::strerror(err),
                             err == EMFILE || err == ENFILE
                                 ? " (out of file descriptors); refusing the waiting connections"
                                 : ""));
    if ((err == EMFILE || err == ENFILE) && spare_fd_) {
      spare_fd_.reset();
      core::unique_fd c(
          ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      int again = errno;
      bool accepted = static_cast<bool>(c);
      if (accepted) {
        static constexpr char line[] =
            "{\"ok\":false,\"error\":\"otpd is out of file descriptors; try again later\"}\n";
        (void)::send(c.get(), line, sizeof line - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      c.reset();
      spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (spare_fd_ && accepted) {
        continue;  // the next waiting connection, if any
      }
      // accept4 checks the fd limit before the queue: with the spare free,
      // EAGAIN says nobody waits any more.
      if (spare_fd_ && (again == EAGAIN || again == EWOULDBLOCK)) {
        return;
      }
    }
    pause_listener();
    return;
  }
}

// Closes the connections whose client is gone (POLLHUP: closed, not just
// shut down for writing, so nothing it asked can be delivered) before otpd
// has read their EOF: a client that reconnects at once must not find its
// old connection still holding a slot.
std::size_t control_server::close_hung_up() {
  std::vector<pollfd> fds;
  std::vector<std::uint64_t> ids;
  fds.reserve(conns_.size());
  ids.reserve(conns_.size());
  for (auto& [id, c] : conns_) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(c->pipe.get()), &fd) == 0) {
      fds.push_back({fd, 0, 0});
      ids.push_back(id);
    }
  }
  if (fds.empty() || ::poll(fds.data(), fds.size(), 0) <= 0) {
    return 0;
  }
  std::size_t n = 0;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if ((fds[i].revents & (POLLHUP | POLLERR)) != 0) {
      close(ids[i]);
      ++n;
    }
  }
  return n;
}

std::int64_t control_server::now_ms() const {
  return static_cast<std::int64_t>(uv_now(loop_));
}

std::size_t control_server::queued_for(std::uint64_t id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? 0 : queued(*it->second);
}

std::size_t control_server::queued(const control_conn& c) const {
  return uv_stream_get_write_queue_size(stream_of(c));
}

// At most one warning a second, with the count of those left out: a flood of
// connections must not become a flood of log lines.
void control_server::warn_limited(const std::string& text) {
  std::int64_t now = now_ms();
  if (now - last_warn_ms_ < 1000) {
    ++warns_suppressed_;
    return;
  }
  if (warns_suppressed_ > 0) {
    core::log_warn("{} ({} more control-socket warnings in the last second)", text,
                   warns_suppressed_);
  } else {
    core::log_warn("{}", text);
  }
  last_warn_ms_ = now;
  warns_suppressed_ = 0;
}

void control_server::on_connection(core::unique_fd fd) {
  auto c = std::make_unique<control_conn>();
  c->peer.id = next_conn_++;
  c->owner = this;
  // Same user or root only: the socket mode already says so, this makes sure.
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != ::geteuid() && cred.uid != 0)) {
    warn_limited(
        fmt::format("otpd: refusing control connection from uid {} pid {}", cred.uid, cred.pid));
    return;
  }
  c->pipe = uv::handle<uv_pipe_t>::make();
  uv_pipe_init(loop_, c->pipe.get(), 0);
  if (int rc = uv_pipe_open(c->pipe.get(), fd.get()); rc != 0) {
    warn_limited(fmt::format("otpd: unable to open a control connection: {}", uv_strerror(rc)));
    return;  // fd is still ours: closed here; the pipe handle closes empty
  }
  (void)fd.release();  // the pipe's now
  c->peer.uid = cred.uid;
  c->peer.pid = cred.pid;
  c->accepted_ms = c->active_ms = now_ms();
  admit(std::move(c));
}

// A regular slot while there is one; else the reserve, making room there by
// closing the oldest reserve connection that has sent nothing (a client
// that holds connections open), or refusing this one when every reserve
// connection is busy with its request.
void control_server::admit(std::unique_ptr<control_conn> conn) {
  std::size_t regular = 0;
  for (auto& [id, other] : conns_) {
    regular += other->peer.one_shot ? 0 : 1;
  }
  if (regular >= limits_.max_connections) {
    (void)close_hung_up();
  }
  regular = 0;
  std::size_t reserve = 0;
  control_conn* oldest_waiting = nullptr;
  for (auto& [id, other] : conns_) {
    if (!other->peer.one_shot) {
      ++regular;
      continue;
    }
    ++reserve;
    int pending = 0;
    uv_os_fd_t fd;
    bool waiting = !other->answered && !other->finishing && other->in.empty() &&
                   uv_fileno(reinterpret_cast<uv_handle_t*>(other->pipe.get()), &fd) == 0 &&
                   ::ioctl(fd, FIONREAD, &pending) == 0 && pending == 0;
    if (waiting && (oldest_waiting == nullptr || other->accepted_ms < oldest_waiting->accepted_ms ||
                    (other->accepted_ms == oldest_waiting->accepted_ms &&
                     other->peer.id < oldest_waiting->peer.id))) {
      oldest_waiting = other.get();
    }
  }
  control_conn& c = *conn;
  c.pipe.get()->data = &c;
  conns_[c.peer.id] = std::move(conn);
  arm_sweep();
  if (regular < limits_.max_connections) {
    start_reading(c);
    return;
  }
  c.peer.one_shot = true;
  if (reserve >= reserve_connections) {
    if (oldest_waiting == nullptr) {
      refuse(c, fmt::format("too many control connections ({} and {} one-shot); try again later",
                            limits_.max_connections, reserve_connections));
      return;
    }
    refuse(*oldest_waiting,
           fmt::format("too many control connections ({} and {} one-shot), and this one "
                       "sent no request",
                       limits_.max_connections, reserve_connections));
  }
  start_reading(c);
}

void control_server::start_reading(control_conn& c) {
  if (c.reading || c.finishing || c.eof) {
    return;
  }
  c.reading = true;
  uv_read_start(
      stream_of(c),
      [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        static char slab[65536];
        buf->base = slab;
        buf->len = sizeof slab;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* conn = static_cast<control_conn*>(s->data);
        conn->owner->on_read(*conn, n, buf);
      });
}

control_peer* control_server::peer(std::uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : &it->second->peer;
}

// The connection's memory is kept until the next callback of the server
// (closed_): its own code may still be on the stack. Its pipe closes now, so
// libuv calls nothing of it any more.
void control_server::close(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  std::unique_ptr<control_conn> c = std::move(it->second);
  conns_.erase(it);
  c->pipe.reset();  // pending writes are cancelled by libuv
  closed_.push_back(std::move(c));
}

void control_server::close_all() {
  conns_.clear();
  closed_.clear();
  sweep_timer_.reset();
  pause_timer_.reset();
  listener_.reset();  // the poll first, then its fd
  listen_fd_.reset();
  spare_fd_.reset();
}

// The error line if the socket takes it at once (best effort: a client that
// does not read gets none), then close.
void control_server::refuse(control_conn& c, const std::string& why) {
  warn_limited(fmt::format("otpd: control connection {} (pid {}, uid {}): {}; closing it",
                           c.peer.id, c.peer.pid, c.peer.uid, why));
  try {
    auto line = line_of(protocol::error_reply{why}.to_json());
    uv_buf_t b = uv_buf_init(const_cast<char*>(line->data()), static_cast<unsigned>(line->size()));
    (void)uv_try_write(stream_of(c), &b, 1);
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): closing says enough
  }
  close(c.peer.id);
}

void control_server::on_read(control_conn& c, ssize_t n, const uv_buf_t* buf) {
  closed_.clear();
  if (n == UV_EOF) {
    // The client sent all it will: answer what is buffered, then close.
    c.eof = true;
    c.reading = false;
    uv_read_stop(stream_of(c));
    process(c);
    return;
  }
  if (n < 0) {
    close(c.peer.id);
    return;
  }
  c.in.append(buf->base, static_cast<std::size_t>(n));
  process(c);
}

// Handles the buffered request lines while the connection's output is
// under max_queue_bytes; over it, stops reading until on_written sees the
// client catch up. A partial line over max_request_bytes is refused.
void control_server::process(control_conn& c) {
  std::size_t start = 0;
  while (!c.finishing && queued(c) <= max_queue_bytes) {
    auto nl = c.in.find('\n', start);
    if (nl == std::string::npos) {
      break;
    }
    // A copy: the request may close this connection, and c.in with it.
    std::string line = c.in.substr(start, nl - start);
    start = nl + 1;
    if (!handle_request(c, line)) {
      return;  // closed: c is in closed_, not to be touched again
    }
  }
  if (c.finishing) {
    return;
  }
  c.in.erase(0, start);
  if (c.in.size() > max_request_bytes && c.in.find('\n') == std::string::npos) {
    refuse(c, fmt::format("request line over {} bytes", max_request_bytes));
    return;
  }
  bool has_line = c.in.find('\n') != std::string::npos;
  if (c.eof && !has_line) {
    finish(c);  // nothing more will come: close once the replies are out
    return;
  }
  if (queued(c) > max_queue_bytes) {
    if (c.reading) {
      uv_read_stop(stream_of(c));  // backpressure: the client must read first
      c.reading = false;
    }
  } else {
    start_reading(c);
  }
}

// Every request is answered exactly once (control_handler), and a one-shot
// connection is closed after its answer. Returns false once the connection
// is closed.
bool control_server::handle_request(control_conn& c, std::string_view line) {
  const std::uint64_t id = c.peer.id;
  c.active_ms = now_ms();
  json ans;
  try {
    ans = on_request_(c.peer, line);
  } catch (...) {
    c.peer.hang_up = true;  // the handler must not throw; if it does, a disconnect answers
  }
  if (conns_.count(id) == 0) {
    after_request_();
    return false;
  }
  if (c.peer.hang_up) {
    close(id);
    after_request_();
    return false;
  }
  if (!ans.is_null()) {
    send(c, ans);
    if (conns_.count(id) == 0) {
      after_request_();
      return false;
    }
    if (c.peer.one_shot) {
      c.answered = true;
      finish(c);
    }
  }
  after_request_();
  return conns_.count(id) != 0;
}

void control_server::send(control_conn& c, const json& j) {
  std::shared_ptr<const std::string> line;
  try {
    line = line_of(j);
  } catch (const std::exception&) {
    c.peer.hang_up = true;  // out of memory: the client gets a disconnect
    close(c.peer.id);
    return;
  }
  auto w = std::make_unique<write_req>();
  w->data = std::move(line);
  w->server = this;
  w->id = c.peer.id;
  uv_buf_t b =
      uv_buf_init(const_cast<char*>(w->data->data()), static_cast<unsigned>(w->data->size()));
  w->req.data = w.get();
  int rc = uv_write(&w->req, stream_of(c), &b, 1, [](uv_write_t* req, int status) {
    std::unique_ptr<write_req> done(static_cast<write_req*>(req->data));
    if (status == UV_ECANCELED) {
      return;  // its connection is closing
    }
    if (status < 0) {
      done->server->close(done->id);  // the client is gone; it may not be read any more
      return;
    }
    done->server->on_written(done->id);
  });
  if (rc == 0) {
    (void)w.release();  // owned by the write callback now
  }
}

void control_server::send_to(std::uint64_t id, const json& j) {
  if (auto c = conns_.find(id); c != conns_.end() && !c->second->finishing) {
    send(*c->second, j);
  }
}

void control_server::on_written(std::uint64_t id) {
  closed_.clear();
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  control_conn& c = *it->second;
  if (c.finishing) {
    if (queued(c) == 0) {
      close(id);
    }
    return;
  }
  // Resume below half the cap, so a client reading slowly does not make us
  // stop and start on every reply.
  if (!c.reading && queued(c) <= max_queue_bytes / 2) {
    process(c);
  }
}

// No more requests from c: closed once its output is written (at once when
// there is none), or by the sweep when the client does not read it.
void control_server::finish(control_conn& c) {
  c.finishing = true;
  c.finish_ms = now_ms();
  if (c.reading) {
    uv_read_stop(stream_of(c));
    c.reading = false;
  }
  if (queued(c) == 0) {
    close(c.peer.id);
  }
}

void control_server::broadcast(const json& j) {
  std::shared_ptr<const std::string> line;
  try {
    line = line_of(j);
  } catch (const std::exception&) {
    return;  // out of memory: subscribers miss this event
  }
  std::vector<std::uint64_t> slow;
  for (auto& [id, c] : conns_) {
    if (!c->peer.subscribed || c->finishing) {
      continue;
    }
    if (queued(*c) > max_queue_bytes) {
      slow.push_back(id);  // a subscriber that does not read loses its stream, not our memory
      continue;
    }
    auto w = std::make_unique<write_req>();
    w->data = line;
    w->server = this;
    w->id = id;
    uv_buf_t b = uv_buf_init(const_cast<char*>(line->data()), static_cast<unsigned>(line->size()));
    w->req.data = w.get();
    if (uv_write(&w->req, stream_of(*c), &b, 1, [](uv_write_t* req, int status) {
          std::unique_ptr<write_req> done(static_cast<write_req*>(req->data));
          if (status < 0 && status != UV_ECANCELED) {
            done->server->close(done->id);
          } else if (status == 0) {
            done->server->on_written(done->id);
          }
        }) == 0) {
      (void)w.release();
    }
  }
  for (auto id : slow) {
    control_conn& c = *conns_[id];
    warn_limited(fmt::format(
        "otpd: event subscriber {} (pid {}, uid {}) is not reading (over {} bytes unsent); "
        "closing it",
        id, c.peer.pid, c.peer.uid, max_queue_bytes));
    close(id);
  }
}

void control_server::arm_sweep() {
  if (sweep_timer_ && uv_is_active(reinterpret_cast<uv_handle_t*>(sweep_timer_.get())) == 0) {
    uv_timer_start(
        sweep_timer_.get(), [](uv_timer_t* t) { static_cast<control_server*>(t->data)->sweep(); },
        static_cast<std::uint64_t>(sweep_period_ms), static_cast<std::uint64_t>(sweep_period_ms));
  }
}

// Once a second while any connection is open: one-shot connections that
// sent nothing within the grace period, idle ones, and finishing ones whose
// client does not read its last reply.
void control_server::sweep() {
  closed_.clear();
  const std::int64_t now = now_ms();
  std::vector<std::pair<std::uint64_t, std::string>> refusals;
  std::vector<std::uint64_t> stale;
  for (auto& [id, c] : conns_) {
    if (c->finishing) {
      if (now - c->finish_ms >= one_shot_grace_ms) {
        stale.push_back(id);
      }
    } else if (c->peer.one_shot) {
      if (!c->answered && now - c->accepted_ms >= one_shot_grace_ms) {
        refusals.emplace_back(
            id, fmt::format("too many control connections ({} and {} one-shot), and this one "
                            "sent no request within {} ms",
                            limits_.max_connections, reserve_connections, one_shot_grace_ms));
      }
    } else if (!c->peer.subscribed && c->peer.monitors == 0 &&
               now - c->active_ms >= limits_.idle_timeout_ms) {
      // Paused (backpressure) that long: the client sent requests and
      // does not read their replies.
      refusals.emplace_back(
          id, c->reading
                  ? fmt::format("idle for {} s (no request, no subscription)",
                                (now - c->active_ms) / 1000)
                  : fmt::format("not reading its replies for {} s", (now - c->active_ms) / 1000));
    }
  }
  for (auto id : stale) {
    warn_limited(
        fmt::format("otpd: control connection {} does not read its last reply; closing it", id));
    close(id);
  }
  for (auto& [id, why] : refusals) {
    if (auto it = conns_.find(id); it != conns_.end()) {
      refuse(*it->second, why);
    }
  }
  if (conns_.empty()) {
    uv_timer_stop(sweep_timer_.get());
    // The last connection of a burst is gone: give its buffers back to the
    // system (queued replies of a crowd can be megabytes, freed piecemeal).
    ::malloc_trim(0);
  }
}

}  // namespace otpd::supervisor

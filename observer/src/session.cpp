#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <otpd/observer/session.hpp>
#include <otpd/protocol/control.hpp>
#include <otpd/protocol/layout.hpp>

namespace otpd::observer {

namespace proto = otpd::protocol;

// ---- link ------------------------------------------------------------------------

core::Result<void> link::connect(const std::string& runtime_dir) {
  close();
  std::string path = proto::layout::control_socket(runtime_dir);
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) {
    return core::errno_code(ENAMETOOLONG);
  }
  core::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return core::errno_code();
  }
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  // A Unix stream connect completes at once or fails (EAGAIN: the backlog
  // is full, which callers treat as any other failure and retry later).
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return core::errno_code();
  }
  fd_ = std::move(fd);
  return {};
}

void link::close() noexcept {
  fd_.reset();
  buf_.clear();
}

core::Result<void> link::send(const json& request) {
  if (!fd_) {
    return core::errc::disconnected;
  }
  // A request may carry text a child controls (an id typed from a page):
  // invalid UTF-8 is replaced, never a throw.
  std::string data = proto::dump_json(request) + "\n";
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, 5000) <= 0) {
        return core::errc::timeout;
      }
      continue;
    }
    if (n <= 0) {
      return core::errno_code();
    }
    off += static_cast<std::size_t>(n);
  }
  return {};
}

core::Result<bool> link::fill() {
  char tmp[65536];
  for (;;) {
    ssize_t n = ::read(fd_.get(), tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return true;
    }
    if (n < 0) {
      return core::errno_code();
    }
    if (n == 0) {
      return false;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < sizeof tmp) {
      return true;
    }
  }
}

core::Result<std::vector<std::string>> link::read_available() {
  if (!fd_) {
    return core::errc::disconnected;
  }
  auto more = fill();
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (;;) {
    auto nl = buf_.find('\n', start);
    if (nl == std::string::npos) {
      break;
    }
    lines.push_back(buf_.substr(start, nl - start));
    start = nl + 1;
  }
  buf_.erase(0, start);
  if (buf_.size() > max_line) {
    return core::errc::too_large;
  }
  if (!more) {
    return more.fail();
  }
  if (!*more && lines.empty()) {
    return core::errc::closed;
  }
  if (!*more) {
    // Hand over what came before the EOF; the next call reports closed.
    fd_.reset();
  }
  return lines;
}

core::Result<std::string> link::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    if (!fd_) {
      return core::errc::closed;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return core::errc::timeout;
    }
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return core::errno_code();
    }
    if (r == 0) {
      continue;
    }
    auto more = fill();
    if (!more) {
      return more.fail();
    }
    if (!*more) {
      fd_.reset();
    }
    if (buf_.size() > max_line) {
      return core::errc::too_large;
    }
  }
}

core::Result<json> link::call(const json& request, std::chrono::milliseconds timeout) {
  if (auto r = send(request); !r) {
    return r.fail();
  }
  auto line = read_line(timeout);
  if (!line) {
    return line.fail();
  }
  json reply = proto::parse_json(*line);
  if (reply.is_discarded() || !reply.is_object()) {
    return core::errc::malformed;
  }
  return reply;
}

// ---- session ---------------------------------------------------------------------

session::session(std::string runtime_dir, clock_fn now, clock_fn wall)
    : dir_(std::move(runtime_dir)), now_(now), model_(now, std::move(wall)) {}

void session::close() noexcept {
  commands_.close();
  events_.close();
}

core::Result<void> session::open() {
  close();
  if (auto r = commands_.connect(dir_); !r) {
    return r;
  }
  if (auto r = events_.connect(dir_); !r) {
    close();
    return r;
  }
  // Status first, then the subscription: the ring's events up to the
  // status are in the status already (they still count as seen events the
  // first time, for the exit counters).
  if (auto r = refresh_status(); !r) {
    close();
    return r;
  }
  auto reply = events_.call(proto::events_request{true}.to_json(), timeout);
  if (!reply) {
    close();
    return reply.fail();
  }
  if (!proto::is_ok(*reply)) {
    close();
    return {core::errc::protocol, reply->value("error", std::string("events refused"))};
  }
  std::optional<std::int64_t> seen = model_.last_event_ts();
  for (const auto& ev : reply->value(proto::field::recent, json::array())) {
    auto ts = ev.value(proto::field::ts_ms, std::int64_t{0});
    if (seen && ts <= *seen) {
      continue;  // applied before otpd went away
    }
    (void)model_.apply_event(ev);
  }
  // The ring is older than the status we hold (a "started" in it would
  // say starting of a child that is running now): a second status, taken
  // after the subscription, puts every state right; later events arrive
  // in order on the events link.
  return refresh_status();
}

core::Result<void> session::refresh_status() {
  auto reply = commands_.call(proto::status_request{}.to_json(), timeout);
  if (!reply) {
    return reply.fail();
  }
  if (!proto::is_ok(*reply)) {
    return {core::errc::protocol, reply->value("error", std::string("status refused"))};
  }
  try {
    model_.apply_status(*reply);
  } catch (const json::exception& e) {
    return {core::errc::malformed, std::string("status of an unexpected shape: ") + e.what()};
  }
  status_due_ = false;
  last_status_ = now_();
  return {};
}

core::Result<std::vector<json>> session::pump() {
  std::vector<json> out;
  auto lines = events_.read_available();
  if (!lines) {
    close();
    return lines.fail();
  }
  for (const auto& l : *lines) {
    if (l.empty()) {
      continue;
    }
    json ev = proto::parse_json(l);
    if (ev.is_discarded() || !ev.is_object() || !ev.contains(proto::field::event)) {
      continue;
    }
    status_due_ |= model_.apply_event(ev);
    out.push_back(std::move(ev));
  }
  if (status_due_ && now_() - last_status_ >= min_status_interval.count()) {
    if (auto r = refresh_status(); !r) {
      close();
      return r.fail();
    }
  }
  return out;
}

core::Result<void> session::tick() {
  if (status_due_ || now_() - last_status_ >= status_interval.count()) {
    if (auto r = refresh_status(); !r) {
      close();
      return r;
    }
  }
  sample_now();
  return {};
}

void session::sample_now() {
  model_.sample(read_proc, ticks_per_second(), page_size());
  pid_t otpd = model_.facts().otpd_pid;
  if (otpd > 0) {
    auto s = read_proc(otpd);
    std::optional<std::uint64_t> rss;
    if (s) {
      rss = s->rss_pages * static_cast<std::uint64_t>(page_size());
    }
    model_.set_otpd_figures(rss, count_fds(otpd));
  }
}

core::Result<json> session::command(const json& request) {
  if (!commands_.connected()) {
    return core::errc::disconnected;
  }
  // A failure leaves the session as it is: the next tick's status finds
  // a dead link and closes it (another thread may be polling event_fd()).
  return commands_.call(request, timeout);
}

}  // namespace otpd::observer

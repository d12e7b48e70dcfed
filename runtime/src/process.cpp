// The per-process runtime context: mailbox, connections, monitors, links,
// children. See process.hpp for the model and the choice of STREAM sockets.
//
// Layout of the runtime dir:
//   mbox/<pid>     the listening socket of each process's mailbox
//   names/<name>   a symlink to ../mbox/<pid>: the registered name
//   control.sock   the node's otpd (absent when no daemon runs)
//
// Ownership: one context per process, created lazily. A fork()ed child gets a
// copy of the parent's memory; pthread_atfork marks it stale and the child's
// first call drops every inherited fd and starts afresh, so a child never
// writes into a connection its parent also uses.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "detail.hpp"
#include "wire.hpp"
#include <nlohmann/json.hpp>

#include <otpd/core/log.hpp>
#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

using core::errc;
using core::errno_code;
using core::exit_kind;
using core::exit_reason;
using core::unique_fd;

namespace {

constexpr std::size_t read_chunk = std::size_t{256} * 1024;
constexpr std::size_t post_flush_threshold = std::size_t{64} * 1024;
constexpr std::size_t max_out_connections = 512;
constexpr std::size_t max_idle_watches = 64;

// epoll user data: the kind of fd in the top byte, the fd below.
enum class tag : std::uint64_t { listen = 1, conn = 2, pidfd = 3, signal = 4, timer = 5 };
std::uint64_t make_tag(tag t, int fd) {
  return (static_cast<std::uint64_t>(t) << 56) | static_cast<std::uint32_t>(fd);
}

std::atomic<bool> g_forked{false};
void on_fork_child() {
  g_forked.store(true, std::memory_order_relaxed);
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || n == "." || n == "..") {
    return false;
  }
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

struct in_conn {
  unique_fd fd;
  pid_t peer = 0;
  // Bytes [start, end) are received and not yet parsed. The buffer only
  // grows (zero-filled once), so a read never pays for clearing memory.
  std::vector<char> buf;
  std::size_t start = 0;
  std::size_t end = 0;
};

struct out_conn {
  unique_fd fd;
  std::string pending;  // posted frames not yet written
};

struct watch {
  unique_fd pidfd;
  bool child = false;
  bool linked = false;
  std::vector<ref> monitors;
};

Result<void> set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_code();
  }
  return {};
}

// A listening mailbox socket bound at path (replacing a stale socket file of
// a dead process that had the same pid).
Result<unique_fd> listen_at(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    return errc::too_large;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return errno_code();
  }
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return errno_code();
  }
  if (::listen(fd.get(), 1024) != 0) {
    return errno_code();
  }
  return fd;
}

class context {
 public:
  context() = default;
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  context(context&&) = delete;
  context& operator=(context&&) = delete;
  ~context() = default;

  // --- lifecycle -------------------------------------------------------------
  Result<void> init(const init_options& o);
  Result<void> ensure_init() {
    if (g_forked.load(std::memory_order_relaxed)) {
      drop_inherited();
    }
    if (listen_) {
      return {};
    }
    return init({});
  }
  // For senders that need no mailbox of their own (a task's child).
  Result<void> ensure_dir() {
    if (g_forked.load(std::memory_order_relaxed)) {
      drop_inherited();
    }
    if (!dir_.empty()) {
      return {};
    }
    return set_dir(core::default_runtime_dir());
  }
  void drop_inherited();
  void shutdown();
  void become_child(unique_fd listen, const std::string& tmp_path);

  pid_t self() const { return self_; }
  const std::string& dir() const { return dir_; }
  std::string mbox_path(pid_t pid) const { return dir_ + "/mbox/" + std::to_string(pid); }

  // --- sending ---------------------------------------------------------------
  Result<void> send(const address& to, kind k, const ref& r, std::string_view body, deadline until,
                    bool buffered);
  Result<void> flush_all(deadline until);

  // --- receiving -------------------------------------------------------------
  Result<message> receive(const predicate* pred, deadline until);
  std::size_t queued() {
    pump(0);
    return queue_.size();
  }
  int event_fd() const { return epoll_.get(); }
  void dispatch_pending() { pump(0); }
  void drain_all() {
    for (int rounds = 0; rounds < 1000 && pump(0) > 0; ++rounds) {
    }
  }
  void set_max_spin(std::chrono::microseconds max) {
    max_spin_ = max;
    spin_ = max;
  }
  void remove_matching(const ref& r, kind k);

  // --- names -----------------------------------------------------------------
  Result<void> register_name(const std::string& name);
  Result<void> unregister_name(const std::string& name);
  Result<pid_t> whereis(const std::string& name);

  // --- monitors, links, children --------------------------------------------
  ref monitor(pid_t pid);
  void demonitor(const ref& r, bool flush);
  Result<void> link(pid_t pid, bool notify_peer);
  void unlink(pid_t pid, bool notify_peer);
  void set_trap_exit(bool on) { trap_exit_ = on; }
  bool trap_exit() const { return trap_exit_; }
  Result<void> adopt_child(pid_t pid, unique_fd pidfd, bool linked);
  // Stops watching pid; the caller has reaped it or will.
  unique_fd forget(pid_t pid);
  [[noreturn]] void exit_self(const exit_reason& reason);

 private:
  Result<void> set_dir(const std::string& dir);
  Result<pid_t> resolve(const address& to);
  Result<out_conn*> connect_to(pid_t pid, deadline until);
  Result<void> write_out(pid_t pid, out_conn& c, deadline until);
  void drop_out(pid_t pid) { out_.erase(pid); }
  int pump(int timeout_ms);
  void accept_all();
  void read_conn(int fd);
  bool parse_frames(in_conn& c);
  void close_conn(int fd, const char* why);
  void handle_control(const message& m);
  void on_pid_exit(pid_t pid);
  watch& watch_for(pid_t pid, bool* created);
  exit_reason reason_of_non_child(pid_t pid);
  void enqueue(message m) { queue_.push_back(std::move(m)); }
  void read_signals(int fd);

 public:
  void abandon(const ref& r) {
    abandoned_.insert(r);
    remove_matching(r, kind::reply);
  }
  Result<void> set_signal_fd(int fd);
  ref start_timer(std::chrono::milliseconds after, std::string_view body);
  bool cancel_timer(const ref& r);

 private:
  void fire_timers();
  void arm_timer();
  // Pending timers by due time; one timerfd armed for the earliest.
  struct timer {
    ref r;
    std::string body;
  };
  std::multimap<core::clock::time_point, timer> timers_;
  unique_fd timer_fd_;

  pid_t self_ = 0;
  std::string dir_;
  unique_fd listen_;
  unique_fd epoll_;
  std::unordered_map<int, in_conn> in_;
  std::unordered_map<pid_t, out_conn> out_;
  std::unordered_map<pid_t, watch> watches_;
  std::unordered_map<int, pid_t> pidfd_owner_;
  std::unordered_map<ref, pid_t, ref_hash> monitor_owner_;
  void release_if_idle(std::unordered_map<pid_t, watch>::iterator it);
  std::unordered_map<std::string, pid_t> name_cache_;
  std::unordered_set<ref, ref_hash> abandoned_;
  std::deque<message> queue_;
  std::vector<std::string> names_;
  bool trap_exit_ = false;
  std::chrono::microseconds max_spin_{50};
  std::chrono::microseconds spin_{50};
};

context* g_ctx = nullptr;

context& ctx() {
  if (g_ctx == nullptr) {
    g_ctx = new context();  // NOLINT: lives until exit, used by atexit
    ::pthread_atfork(nullptr, nullptr, on_fork_child);
    std::atexit([] {
      if (g_ctx != nullptr && g_ctx->self() == ::getpid()) {
        g_ctx->shutdown();
      }
    });
    if (const char* s = std::getenv("OTPD_SPIN_US"); s != nullptr) {
      g_ctx->set_max_spin(std::chrono::microseconds(std::atol(s)));
    }
  }
  return *g_ctx;
}

// ---------------------------------------------------------------------------

Result<void> context::set_dir(const std::string& dir) {
  if (auto r = core::ensure_private_dir(dir + "/mbox"); !r) {
    return r;
  }
  if (auto r = core::ensure_private_dir(dir + "/names"); !r) {
    return r;
  }
  // The runtime dir itself must be private too (mailboxes inside it).
  if (auto r = core::ensure_private_dir(dir); !r) {
    return r;
  }
  dir_ = dir;
  self_ = ::getpid();
  return {};
}

Result<void> context::init(const init_options& o) {
  if (g_forked.load(std::memory_order_relaxed)) {
    drop_inherited();
  }
  if (listen_) {
    return {};
  }
  std::string dir = o.runtime_dir.empty() ? core::default_runtime_dir() : o.runtime_dir;
  if (auto r = set_dir(dir); !r) {
    return r;
  }
  if (!epoll_) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) {
      return errno_code();
    }
  }
  // Bind under a temporary name, then rename: the mailbox appears atomically
  // at mbox/<pid>, replacing a stale socket file left by a dead process.
  std::string tmp = dir_ + "/mbox/.new." + std::to_string(self_);
  auto fd = listen_at(tmp);
  if (!fd) {
    return fd.error();
  }
  if (::rename(tmp.c_str(), mbox_path(self_).c_str()) != 0) {
    auto ec = errno_code();
    ::unlink(tmp.c_str());
    return ec;
  }
  listen_ = std::move(*fd);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = make_tag(tag::listen, listen_.get());
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listen_.get(), &ev) != 0) {
    return errno_code();
  }
  std::string name = o.name;
  if (name.empty()) {
    if (const char* n = std::getenv("OTPD_NAME"); n != nullptr) {
      name = n;
    }
  }
  if (!name.empty()) {
    if (auto r = register_name(name); !r) {
      return r;
    }
  }
  return {};
}

void context::drop_inherited() {
  g_forked.store(false, std::memory_order_relaxed);
  // Everything here is a copy of the parent's: close our copies of its fds
  // (the parent's stay open) and forget its state. Do not unlink anything.
  in_.clear();
  out_.clear();
  watches_.clear();
  pidfd_owner_.clear();
  monitor_owner_.clear();
  name_cache_.clear();
  abandoned_.clear();
  queue_.clear();
  names_.clear();
  listen_.reset();
  epoll_.reset();
  trap_exit_ = false;
  timers_.clear();
  timer_fd_.reset();
  // dir_ stays: a child belongs to its parent's node.
  self_ = ::getpid();
}

void context::become_child(unique_fd listen, const std::string& tmp_path) {
  drop_inherited();
  // Parent and child both rename; whichever runs first makes mbox/<pid>
  // exist before anyone can learn this pid.
  ::rename(tmp_path.c_str(), mbox_path(self_).c_str());
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  listen_ = std::move(listen);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = make_tag(tag::listen, listen_.get());
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listen_.get(), &ev);
}

void context::shutdown() {
  if (self_ != ::getpid()) {
    return;
  }
  (void)flush_all(deadline::after(std::chrono::milliseconds(1000)));
  for (const auto& n : names_) {
    // Only remove the name if it is still ours (a restarted holder may own it).
    auto p = whereis(n);
    if (p && *p == self_) {
      ::unlink((dir_ + "/names/" + n).c_str());
    }
  }
  names_.clear();
  if (listen_) {
    ::unlink(mbox_path(self_).c_str());
    listen_.reset();
  }
  // Children we are linked to die with us; reap what has ended.
  for (auto& [pid, w] : watches_) {
    if (w.child && w.linked) {
      ::kill(pid, SIGKILL);
    }
  }
  for (auto& [pid, w] : watches_) {
    if (w.child) {
      if (w.linked) {
        (void)core::reap(w.pidfd.get());
      } else {
        (void)core::try_reap(w.pidfd.get());
      }
    }
  }
  watches_.clear();
  monitor_owner_.clear();
  pidfd_owner_.clear();
  in_.clear();
  out_.clear();
  epoll_.reset();
}

// --- sending ----------------------------------------------------------------

Result<pid_t> context::resolve(const address& to) {
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

Result<out_conn*> context::connect_to(pid_t pid, deadline until) {
  if (auto it = out_.find(pid); it != out_.end()) {
    return &it->second;
  }
  if (out_.size() >= max_out_connections) {
    // Bound our fds: drop an idle connection (flushed first).
    for (auto it = out_.begin(); it != out_.end(); ++it) {
      if (it->second.pending.empty()) {
        out_.erase(it);
        break;
      }
    }
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::string path = mbox_path(pid);
  if (path.size() >= sizeof sa.sun_path) {
    return errc::too_large;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
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
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
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
    auto conn = connect_to(*pid, lazy && out_.count(*pid) == 0 ? effective() : until);
    if (!conn) {
      if (conn.error() == errc::noproc && !to.is_pid() && attempt == 0) {
        name_cache_.erase(to.name());  // the name may have moved: look again
        continue;
      }
      return conn.error();
    }
    out_conn& c = **conn;
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
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
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
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = make_tag(tag::conn, fd);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
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
  while (c.end - c.start >= sizeof(wire::header)) {
    wire::header h;
    std::memcpy(&h, c.buf.data() + c.start, sizeof h);
    if (const char* why = wire::check_header(h); why != nullptr) {
      close_conn(c.fd.get(), why);
      return false;
    }
    if (c.end - c.start < sizeof h + h.body_len) {
      break;
    }
    std::string_view body(c.buf.data() + c.start + sizeof h, h.body_len);
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

// Only what is queued: callers have already stopped whatever could still
// produce such a message (the monitor, the call), so nothing to pump.
void context::remove_matching(const ref& r, kind k) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->ref == r && it->kind == k) {
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

// --- names ------------------------------------------------------------------

Result<void> context::register_name(const std::string& name) {
  if (!valid_name(name)) {
    return errc::invalid_argument;
  }
  if (!listen_) {
    if (auto i = ensure_init(); !i) {
      return i;
    }
  }
  std::string target = "../mbox/" + std::to_string(self_);
  std::string tmp = dir_ + "/names/.new." + std::to_string(self_);
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    return errno_code();
  }
  // rename() replaces a stale holder atomically: the name follows a
  // restarted process without a moment where it resolves to nothing.
  if (::rename(tmp.c_str(), (dir_ + "/names/" + name).c_str()) != 0) {
    auto ec = errno_code();
    ::unlink(tmp.c_str());
    return ec;
  }
  if (std::find(names_.begin(), names_.end(), name) == names_.end()) {
    names_.push_back(name);
  }
  return {};
}

Result<void> context::unregister_name(const std::string& name) {
  auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) {
    return errc::not_found;
  }
  names_.erase(it);
  ::unlink((dir_ + "/names/" + name).c_str());
  return {};
}

Result<pid_t> context::whereis(const std::string& name) {
  if (auto i = ensure_dir(); !i) {
    return i.error();
  }
  if (!valid_name(name)) {
    return errc::invalid_argument;
  }
  char buf[256];
  ssize_t n = ::readlink((dir_ + "/names/" + name).c_str(), buf, sizeof buf - 1);
  if (n <= 0) {
    return errc::noproc;
  }
  buf[n] = '\0';
  const char* slash = std::strrchr(buf, '/');
  auto pid = static_cast<pid_t>(std::atol(slash != nullptr ? slash + 1 : buf));
  if (pid <= 0) {
    return errc::noproc;
  }
  // A name whose holder died without cleaning up (SIGKILL) is not a name.
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return errc::noproc;
  }
  return pid;
}

// --- monitors, links, children ---------------------------------------------

watch& context::watch_for(pid_t pid, bool* created) {
  auto it = watches_.find(pid);
  *created = it == watches_.end();
  return watches_[pid];
}

ref context::monitor(pid_t pid) {
  ref r = make_ref();
  if (auto i = ensure_init(); !i) {
    enqueue({kind::down, pid, r, pack_reason({exit_kind::noproc, 0})});
    return r;
  }
  bool created = false;
  watch& w = watch_for(pid, &created);
  if (created) {
    auto fd = core::pidfd_open(pid);
    if (!fd) {
      watches_.erase(pid);
      enqueue({kind::down, pid, r, pack_reason({exit_kind::noproc, 0})});
      return r;
    }
    w.pidfd = std::move(*fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = make_tag(tag::pidfd, w.pidfd.get());
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.pidfd.get(), &ev);
    pidfd_owner_[w.pidfd.get()] = pid;
  }
  w.monitors.push_back(r);
  monitor_owner_[r] = pid;
  return r;
}

void context::demonitor(const ref& r, bool flush) {
  if (auto owner = monitor_owner_.find(r); owner != monitor_owner_.end()) {
    auto it = watches_.find(owner->second);
    monitor_owner_.erase(owner);
    if (it != watches_.end()) {
      auto& mons = it->second.monitors;
      mons.erase(std::remove(mons.begin(), mons.end(), r), mons.end());
      release_if_idle(it);
    }
  }
  if (flush) {
    remove_matching(r, kind::down);
  }
}

// A watch nobody needs any more. Keep a bounded number of them open: a caller
// that calls the same servers again and again then monitors without a
// pidfd_open + two epoll_ctl + close per call.
void context::release_if_idle(std::unordered_map<pid_t, watch>::iterator it) {
  const watch& w = it->second;
  if (!w.monitors.empty() || w.linked || w.child) {
    return;
  }
  if (watches_.size() <= max_idle_watches) {
    return;
  }
  pidfd_owner_.erase(w.pidfd.get());
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.pidfd.get(), nullptr);
  watches_.erase(it);
}

Result<void> context::link(pid_t pid, bool notify_peer) {
  if (auto i = ensure_init(); !i) {
    return i;
  }
  if (pid == self_) {
    return {};
  }
  bool created = false;
  watch& w = watch_for(pid, &created);
  if (created) {
    auto fd = core::pidfd_open(pid);
    if (!fd) {
      watches_.erase(pid);
      // OTP: linking to a dead process gives an exit signal noproc.
      if (trap_exit_) {
        enqueue({kind::exit, pid, {}, pack_reason({exit_kind::noproc, 0})});
        return {};
      }
      return errc::noproc;
    }
    w.pidfd = std::move(*fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = make_tag(tag::pidfd, w.pidfd.get());
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.pidfd.get(), &ev);
    pidfd_owner_[w.pidfd.get()] = pid;
  }
  w.linked = true;
  if (notify_peer) {
    return send(address(pid), kind::link, {}, {}, deadline::after(default_send_timeout), false);
  }
  return {};
}

void context::unlink(pid_t pid, bool notify_peer) {
  auto it = watches_.find(pid);
  if (it == watches_.end()) {
    return;
  }
  it->second.linked = false;
  release_if_idle(it);
  if (notify_peer) {
    (void)send(address(pid), kind::unlink, {}, {}, deadline::after(default_send_timeout), false);
  }
}

void context::handle_control(const message& m) {
  if (m.kind == kind::link) {
    (void)link(m.from, false);
  } else if (m.kind == kind::unlink) {
    unlink(m.from, false);
  }
}

Result<void> context::adopt_child(pid_t pid, unique_fd pidfd, bool linked) {
  watch& w = watches_[pid];
  if (w.pidfd) {
    pidfd_owner_.erase(w.pidfd.get());
  }
  w.pidfd = std::move(pidfd);
  w.child = true;
  w.linked = w.linked || linked;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = make_tag(tag::pidfd, w.pidfd.get());
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.pidfd.get(), &ev) != 0) {
    return errno_code();
  }
  pidfd_owner_[w.pidfd.get()] = pid;
  return {};
}

unique_fd context::forget(pid_t pid) {
  auto it = watches_.find(pid);
  if (it == watches_.end()) {
    return {};
  }
  for (const ref& r : it->second.monitors) {
    monitor_owner_.erase(r);
  }
  unique_fd fd = std::move(it->second.pidfd);
  pidfd_owner_.erase(fd.get());
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
  watches_.erase(it);
  return fd;
}

Result<void> context::set_signal_fd(int fd) {
  if (auto i = ensure_init(); !i) {
    return i;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = make_tag(tag::signal, fd);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return errno_code();
  }
  return {};
}

ref context::start_timer(std::chrono::milliseconds after, std::string_view body) {
  ref r = make_ref();
  if (auto i = ensure_init(); !i) {
    return r;
  }
  if (!timer_fd_) {
    timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = make_tag(tag::timer, timer_fd_.get());
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, timer_fd_.get(), &ev);
  }
  timers_.emplace(core::clock::now() + after, timer{r, std::string(body)});
  arm_timer();
  return r;
}

bool context::cancel_timer(const ref& r) {
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.r == r) {
      timers_.erase(it);
      arm_timer();
      return true;
    }
  }
  return false;
}

void context::arm_timer() {
  itimerspec its{};
  if (!timers_.empty()) {
    auto left = timers_.begin()->first - core::clock::now();
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    if (ns < 1) {
      ns = 1;  // 0 would disarm it
    }
    its.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    its.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  }
  ::timerfd_settime(timer_fd_.get(), 0, &its, nullptr);
}

void context::fire_timers() {
  std::uint64_t expirations;
  while (::read(timer_fd_.get(), &expirations, sizeof expirations) > 0) {
  }
  auto now = core::clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    timer t = std::move(timers_.begin()->second);
    timers_.erase(timers_.begin());
    enqueue({kind::user, self_, t.r, std::move(t.body)});
  }
  arm_timer();
}

// Signals as messages: a signalfd's signals arrive as kind::system messages
// ["signal", signo] from pid 0, handled in order with everything else.
void context::read_signals(int fd) {
  signalfd_siginfo si{};
  while (::read(fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    enqueue({kind::system, 0, {}, pack(std::tuple<std::string, int>("signal", si.ssi_signo))});
  }
}

// Only a parent can read an exit status. Under otpd the daemon is the parent
// of every worker: ask it over the control socket (it keeps recent exits).
// It may reap a moment after we saw the pidfd fire, so ask a few times, for
// at most ~200 ms; without a daemon the reason is simply unknown.
exit_reason context::reason_of_non_child(pid_t pid) {
  std::string path = dir_ + "/control.sock";
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path || ::access(path.c_str(), F_OK) != 0) {
    return {exit_kind::unknown, 0};
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  auto until = deadline::after(std::chrono::milliseconds(200));
  std::string request = R"({"cmd":"exit-reason","pid":)" + std::to_string(pid) + "}\n";
  while (!until.expired()) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return {exit_kind::unknown, 0};
    }
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return {exit_kind::unknown, 0};
    }
    std::string line;
    char buf[512];
    while (line.find('\n') == std::string::npos) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, until.poll_timeout_ms()) <= 0) {
        return {exit_kind::unknown, 0};
      }
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) {
        return {exit_kind::unknown, 0};
      }
      line.append(buf, static_cast<std::size_t>(n));
    }
    auto j = nlohmann::json::parse(line.substr(0, line.find('\n')), nullptr, false);
    if (j.is_object() && j.value("found", false)) {
      return {static_cast<exit_kind>(j.value("reason_kind", static_cast<int>(exit_kind::unknown))),
              j.value("reason_value", 0)};
    }
    ::poll(nullptr, 0, 5);  // not reaped yet: ask again shortly
  }
  return {exit_kind::unknown, 0};
}

void context::on_pid_exit(pid_t pid) {
  auto it = watches_.find(pid);
  if (it == watches_.end()) {
    return;
  }
  watch w = std::move(it->second);
  watches_.erase(it);
  // What pid sent before it died comes before its DOWN: take in its pending
  // connections and bytes first.
  accept_all();
  std::vector<int> from_pid;
  for (auto& [fd, c] : in_) {
    if (c.peer == pid) {
      from_pid.push_back(fd);
    }
  }
  for (int fd : from_pid) {
    read_conn(fd);
  }
  pidfd_owner_.erase(w.pidfd.get());
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.pidfd.get(), nullptr);
  exit_reason reason;
  if (w.child) {
    auto e = core::try_reap(w.pidfd.get());
    reason = e ? exit_reason::from_siginfo(e->code, e->status) : exit_reason{exit_kind::unknown, 0};
    // A SIGKILLed child could not remove its mailbox socket.
    ::unlink(mbox_path(pid).c_str());
  } else {
    reason = reason_of_non_child(pid);
  }
  out_.erase(pid);
  std::string body = pack_reason(reason);
  for (const ref& r : w.monitors) {
    monitor_owner_.erase(r);
    enqueue({kind::down, pid, r, body});
  }
  if (w.linked) {
    if (trap_exit_) {
      enqueue({kind::exit, pid, {}, body});
    } else if (!reason.is_normal()) {
      core::log_info("exiting: linked process {} ended ({})", pid, reason.to_string());
      exit_self(reason);
    }
  }
}

void context::exit_self(const exit_reason& reason) {
  shutdown();
  std::fflush(nullptr);
  switch (reason.kind) {
    case exit_kind::normal:
    case exit_kind::shutdown:
      std::_Exit(0);
    case exit_kind::exit_code:
      std::_Exit(reason.value);
    case exit_kind::killed:
    case exit_kind::signal:
    case exit_kind::core_dump: {
      int sig = reason.kind == exit_kind::killed ? SIGKILL : reason.value;
      struct sigaction sa {};
      sa.sa_handler = SIG_DFL;
      ::sigaction(sig, &sa, nullptr);
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, sig);
      ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
      ::raise(sig);
      std::_Exit(128 + sig);
    }
    default:
      std::_Exit(1);
  }
}

}  // namespace

// --- the public API ---------------------------------------------------------

std::string address::to_string() const {
  return is_pid() ? "<" + std::to_string(pid()) + ">" : name();
}

Result<void> init(const init_options& options) {
  return ctx().init(options);
}
void shutdown() noexcept {
  if (g_ctx == nullptr) {
    return;
  }
  try {
    g_ctx->shutdown();
  } catch (...) {
    // Closing down must not throw; what could not be cleaned up is left to
    // the next process with our pid (stale sockets are replaced on bind).
  }
}
pid_t self() noexcept {
  return ::getpid();
}
const std::string& runtime_dir() {
  (void)ctx().ensure_dir();
  return ctx().dir();
}

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

ref start_timer(milliseconds after, std::string_view body) {
  return ctx().start_timer(after, body);
}
bool cancel_timer(const ref& r) {
  return ctx().cancel_timer(r);
}

Result<void> register_name(const std::string& name) {
  return ctx().register_name(name);
}
Result<void> unregister_name(const std::string& name) {
  return ctx().unregister_name(name);
}
Result<pid_t> whereis(const std::string& name) {
  return ctx().whereis(name);
}

ref monitor(pid_t pid) {
  return ctx().monitor(pid);
}
ref monitor(const address& to) {
  if (to.is_pid()) {
    return monitor(to.pid());
  }
  auto pid = whereis(to.name());
  // OTP's shape: monitoring a name nobody holds gives DOWN noproc at once.
  return monitor(pid ? *pid : -1);
}
void demonitor(const ref& r, bool flush) {
  ctx().demonitor(r, flush);
}
Result<void> link(pid_t pid) {
  return ctx().link(pid, true);
}
void unlink(pid_t pid) {
  ctx().unlink(pid, true);
}
void trap_exit(bool on) {
  ctx().set_trap_exit(on);
}
bool trapping_exits() {
  return ctx().trap_exit();
}
void exit_self(const core::exit_reason& reason) {
  ctx().exit_self(reason);
}

Result<void> kill(pid_t pid, int sig) {
  if (::kill(pid, sig) != 0) {
    return errno == ESRCH ? core::make_error_code(errc::noproc) : errno_code();
  }
  return {};
}

void notify_ready() noexcept {
  const char* fd = std::getenv("OTPD_READY_FD");
  if (fd == nullptr) {
    return;
  }
  int n = std::atoi(fd);
  ssize_t w;
  do {
    w = ::write(n, "\n", 1);
  } while (w < 0 && errno == EINTR);
  ::close(n);
  ::unsetenv("OTPD_READY_FD");
}

Result<spawned_process> spawn(std::function<int()> fn, const spawn_options& options) {
  context& c = ctx();
  if (auto i = c.ensure_init(); !i) {
    return i.error();
  }
  static std::atomic<unsigned> counter{0};
  std::string tmp = c.dir() + "/mbox/.child." + std::to_string(c.self()) + "." +
                    std::to_string(counter.fetch_add(1));
  auto lfd = listen_at(tmp);
  if (!lfd) {
    return lfd.error();
  }
  pid_t parent = c.self();
  // Flush stdio first: the child's copy of unwritten buffers would otherwise
  // be written twice, once by each process.
  std::fflush(nullptr);
  core::spawn_options so;
  so.new_process_group = false;  // stay in our group: otpd's group kill reaches us all
  so.death_signal = options.kill_with_parent ? SIGKILL : 0;
  int listen_raw = lfd->get();
  auto s = core::spawn_function(so, [&]() -> int {
    ctx().become_child(unique_fd(listen_raw), tmp);
    // Linked at birth: if the parent died before the link was in place (it
    // is gone, or we were re-parented), die now as the link would have made us.
    if (options.link && (!ctx().link(parent, false) || ::getppid() != parent)) {
      ctx().exit_self({exit_kind::unknown, 0});
    }
    if (!options.name.empty()) {
      (void)ctx().register_name(options.name);
    }
    int code = 70;
    try {
      code = fn();
    } catch (const std::exception& e) {
      core::log_error("process crashed: uncaught exception: {}", e.what());
    } catch (...) {
      core::log_error("process crashed: uncaught exception");
    }
    ctx().shutdown();
    std::fflush(nullptr);
    return code;
  });
  if (!s) {
    ::unlink(tmp.c_str());
    return s.error();
  }
  ::rename(tmp.c_str(), c.mbox_path(s->pid).c_str());
  lfd->reset();
  spawned_process out{s->pid, {}};
  if (auto a = c.adopt_child(s->pid, std::move(s->pidfd), options.link); !a) {
    return a.error();
  }
  if (options.monitor) {
    out.monitor_ref = c.monitor(s->pid);
  }
  return out;
}

Result<spawned_process> spawn_exec(const std::vector<std::string>& argv,
                                   const exec_options& options) {
  context& c = ctx();
  if (auto i = c.ensure_init(); !i) {
    return i.error();
  }
  core::spawn_options so;
  so.argv = argv;
  so.new_process_group = false;
  so.death_signal = options.spawn.kill_with_parent ? SIGKILL : 0;
  // Environment: ours, plus the node's runtime dir and the caller's extras.
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    if (kv.rfind("OTPD_RUNTIME_DIR=", 0) != 0 && kv.rfind("OTPD_READY_FD=", 0) != 0 &&
        kv.rfind("OTPD_NAME=", 0) != 0) {
      so.env.push_back(std::move(kv));
    }
  }
  so.env.push_back("OTPD_RUNTIME_DIR=" + c.dir());
  if (!options.spawn.name.empty()) {
    so.env.push_back("OTPD_NAME=" + options.spawn.name);
  }
  for (const auto& kv : options.env) {
    so.env.push_back(kv);
  }
  unique_fd ready_read;
  unique_fd ready_write;
  constexpr int ready_fd_in_child = 3;
  if (options.wait_ready) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      return errno_code();
    }
    ready_read.reset(p[0]);
    ready_write.reset(p[1]);
    so.env.push_back("OTPD_READY_FD=" + std::to_string(ready_fd_in_child));
    so.fds.emplace_back(ready_write.get(), ready_fd_in_child);
  }
  auto s = core::spawn(so);
  if (!s) {
    return s.error();
  }
  ready_write.reset();
  pid_t pid = s->pid;
  if (auto a = c.adopt_child(pid, std::move(s->pidfd), options.spawn.link); !a) {
    return a.error();
  }
  spawned_process out{pid, {}};
  if (options.spawn.monitor) {
    out.monitor_ref = c.monitor(pid);
  }
  if (options.wait_ready) {
    // Readiness is a newline; EOF first means the program died or gave up.
    auto until = deadline::after(options.ready_timeout);
    char ch = 0;
    while (true) {
      pollfd p{ready_read.get(), POLLIN, 0};
      int rc = ::poll(&p, 1, until.poll_timeout_ms());
      if (rc < 0 && errno == EINTR) {
        continue;
      }
      if (rc <= 0) {
        ::kill(pid, SIGKILL);
        return errc::timeout;
      }
      ssize_t n = ::read(ready_read.get(), &ch, 1);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n == 1 && ch == '\n') {
        break;
      }
      if (n <= 0) {
        return errc::start_failed;
      }
    }
  }
  return out;
}

// Helpers for task.cpp and gen_server.cpp (declared in detail.hpp).
namespace detail {
unique_fd forget_child(pid_t pid) {
  return ctx().forget(pid);
}
void abandon(const ref& r) {
  ctx().abandon(r);
}
Result<void> adopt(pid_t pid, unique_fd pidfd) {
  return ctx().adopt_child(pid, std::move(pidfd), false);
}
Result<void> set_signal_fd(int fd) {
  return ctx().set_signal_fd(fd);
}
void drain() {
  // Until the sockets have nothing more: a connection accepted in one round
  // has its bytes read in the next.
  ctx().drain_all();
}
}  // namespace detail

}  // namespace otpd::runtime

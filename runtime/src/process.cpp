// The per-process runtime context: mailbox, connections, monitors, links,
// children. See process.hpp for the model and the choice of STREAM sockets.
//
// One class, detail::context (declared in detail.hpp), holds the state of
// this process; its parts are defined in these units:
//   process.cpp            the context's lifecycle: creation, init, fork,
//                          shutdown, exit_self; the public init/shutdown/self
//   mailbox.cpp            mailbox I/O: connecting, framing (wire.hpp), the
//                          shared-memory ring beside the socket (ring.hpp;
//                          ring.cpp maps it), the sender check of each
//                          envelope, backpressure, the
//                          receive loop and its adaptive spin, signals as
//                          messages, and the epoll loop that feeds the rest
//   names.cpp              the name registry (register_name, whereis)
//   links.cpp              monitors, links, trap_exit, the children we watch
//   exit_reason_query.cpp  asks the node's otpd how a non-child ended
//   timers.cpp             start_timer / cancel_timer on one timerfd
//   spawn.cpp              spawn, spawn_exec, kill, notify_ready
// message.cpp (refs, kinds), task.cpp and gen_server.cpp build on the public
// API and the few helpers at the top of detail.hpp.
//
// The send and receive paths live wholly in mailbox.cpp (with what they call
// inline in detail.hpp and wire.hpp), so a message never costs a call into
// another unit.
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
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "detail.hpp"

#include <otpd/core/log.hpp>
#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

namespace detail {

namespace {
void on_fork_child() {
  g_forked.store(true, std::memory_order_relaxed);
}
}  // namespace

context& make_context() {
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
  if (const char* s = std::getenv("OTPD_MAILBOX_TRANSPORT"); s != nullptr && *s != '\0') {
    if (std::strcmp(s, "socket") == 0) {
      g_ctx->set_transport(transport::socket);
    } else if (std::strcmp(s, "ring") != 0 && std::strcmp(s, "auto") != 0) {
      core::log_warn("OTPD_MAILBOX_TRANSPORT={}: unknown (socket, ring or auto); using auto", s);
    }
  }
  return *g_ctx;
}

Result<unique_fd> listen_at(const std::string& path) {
  auto sa = unix_address(path);
  if (!sa) {
    return errc::too_large;
  }
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return errno_code();
  }
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&*sa), sizeof *sa) != 0) {
    return errno_code();
  }
  if (::listen(fd.get(), 1024) != 0) {
    return errno_code();
  }
  return fd;
}

Result<void> context::set_dir(const std::string& dir) {
  if (auto r = core::ensure_private_dir(protocol::layout::mailbox_dir(dir)); !r) {
    return r;
  }
  if (auto r = core::ensure_private_dir(protocol::layout::names_dir(dir)); !r) {
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
  std::string tmp = protocol::layout::mailbox_dir(dir_) + "/.new." + std::to_string(self_);
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
  if (!watch_fd(tag::listen, listen_.get())) {
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
  rings_.clear();
  dirty_.clear();
  in_.clear();
  out_.clear();
  last_out_ = nullptr;
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
  (void)watch_fd(tag::listen, listen_.get());
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
      ::unlink(protocol::layout::name_link(dir_, n).c_str());
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
  rings_.clear();
  dirty_.clear();
  in_.clear();
  out_.clear();
  last_out_ = nullptr;
  epoll_.reset();
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

// Helpers for task.cpp and gen_server.cpp.
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

// --- the public API ---------------------------------------------------------

using detail::ctx;

std::string address::to_string() const {
  return is_pid() ? "<" + std::to_string(pid()) + ">" : name();
}

Result<void> init(const init_options& options) {
  return ctx().init(options);
}
void shutdown() noexcept {
  if (detail::g_ctx == nullptr) {
    return;
  }
  try {
    detail::g_ctx->shutdown();
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
void exit_self(const core::exit_reason& reason) {
  ctx().exit_self(reason);
}

}  // namespace otpd::runtime

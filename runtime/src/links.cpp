// Monitors, links and the children we watch. Each process we watch has one
// pidfd in the epoll set (shared by all monitors of it, a link, and being our
// child); when it fires, on_pid_exit turns the end into DOWN and EXIT
// messages or, for a link without trap_exit, ends this process too.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "detail.hpp"

#include <otpd/core/log.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

namespace detail {

namespace {
constexpr std::size_t max_idle_watches = 64;

// How a process that is not our child ended, from its zombie's
// /proc/<pid>/stat (field 52, exit_code, in waitpid's form), readable until
// its parent reaps it. The /proc directory is opened first, then the pidfd
// tells that the process is not reaped yet, so the directory is that
// process and not a later one with the same pid (reads through it fail once
// it is reaped). The kernel shows exit_code only to a caller allowed to
// ptrace-read the process (else 0, which would read as normal): so only for a
// process of our euid, or any as root. nullopt when it cannot be known so.
std::optional<exit_reason> zombie_exit_reason(pid_t pid, int pidfd) {
  unique_fd dir(
      ::open(("/proc/" + std::to_string(pid)).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || ::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0) {
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0 || (st.st_uid != ::geteuid() && ::geteuid() != 0)) {
    return std::nullopt;
  }
  unique_fd f(::openat(dir.get(), "stat", O_RDONLY | O_CLOEXEC));
  if (!f) {
    return std::nullopt;
  }
  char buf[4096];
  ssize_t n = ::read(f.get(), buf, sizeof buf - 1);
  if (n <= 0) {
    return std::nullopt;
  }
  std::string text(buf, static_cast<std::size_t>(n));
  auto close = text.rfind(')');  // the command name may hold anything but ends at the last ')'
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(text.substr(close + 1));
  std::vector<std::string> f3;  // fields from the 3rd (state) on
  for (std::string x; fields >> x;) {
    f3.push_back(x);
  }
  if (f3.size() < 50 || f3[0] != "Z") {
    return std::nullopt;  // not a zombie (yet): no exit code to read
  }
  char* end = nullptr;
  long status = std::strtol(f3[49].c_str(), &end, 10);
  if (*end != '\0') {
    return std::nullopt;
  }
  return exit_reason::from_wait_status(static_cast<int>(status));
}
}  // namespace

// The watch of pid, opening its pidfd if it is new; nullptr when pid does not
// exist (or cannot be watched).
watch* context::watch_pid(pid_t pid) {
  if (auto it = watches_.find(pid); it != watches_.end()) {
    return &it->second;
  }
  auto fd = core::pidfd_open(pid);
  if (!fd) {
    return nullptr;
  }
  watch& w = watches_[pid];
  w.pidfd = std::move(*fd);
  (void)watch_fd(tag::pidfd, w.pidfd.get());
  pidfd_owner_[w.pidfd.get()] = pid;
  return &w;
}

ref context::monitor(pid_t pid) {
  ref r = make_ref();
  if (auto i = ensure_init(); !i) {
    enqueue({kind::down, pid, r, pack_reason({exit_kind::noproc, 0})});
    return r;
  }
  watch* w = watch_pid(pid);
  if (w == nullptr) {
    enqueue({kind::down, pid, r, pack_reason({exit_kind::noproc, 0})});
    return r;
  }
  w->monitors.push_back(r);
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
  unwatch_fd(w.pidfd.get());
  watches_.erase(it);
}

Result<void> context::link(pid_t pid, bool notify_peer) {
  if (auto i = ensure_init(); !i) {
    return i;
  }
  if (pid == self_) {
    return {};
  }
  watch* w = watch_pid(pid);
  if (w == nullptr) {
    // OTP: linking to a dead process gives an exit signal noproc.
    if (trap_exit_) {
      enqueue({kind::exit, pid, {}, pack_reason({exit_kind::noproc, 0})});
      return {};
    }
    return errc::noproc;
  }
  w->linked = true;
  w->parent = w->parent || pid == ::getppid();
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
  if (!watch_fd(tag::pidfd, w.pidfd.get())) {
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
  unwatch_fd(fd.get());
  watches_.erase(it);
  return fd;
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
    read_conn(fd, true);
  }
  pidfd_owner_.erase(w.pidfd.get());
  unwatch_fd(w.pidfd.get());
  exit_reason reason;
  if (w.child) {
    auto e = core::try_reap(w.pidfd.get());
    reason = e ? exit_reason::from_siginfo(e->code, e->status) : exit_reason{exit_kind::unknown, 0};
    // A SIGKILLed child could not remove its mailbox socket.
    ::unlink(mbox_path(pid).c_str());
  } else if (auto z = zombie_exit_reason(pid, w.pidfd.get())) {
    reason = *z;
    // A signal may be a stop its supervisor ordered: otpd, its parent,
    // knows whether that ends in `shutdown` or `killed` (OTP's reasons), and
    // its answer wins. Exit codes are taken as they are (no round trip).
    if (reason.kind == exit_kind::signal || reason.kind == exit_kind::killed) {
      if (exit_reason o = ask_otpd_exit_reason(dir_, pid); o.kind != exit_kind::unknown) {
        reason = o;
      }
    }
  } else {
    reason = ask_otpd_exit_reason(dir_, pid);
  }
  drop_out(pid);
  std::string body = pack_reason(reason);
  for (const ref& r : w.monitors) {
    monitor_owner_.erase(r);
    enqueue({kind::down, pid, r, body});
  }
  if (w.linked) {
    // The rule (process.hpp, link): an unknown end may well have been a
    // normal exit, which must never kill, so it propagates only from our
    // parent, whose every end takes its linked children along (shutdown).
    if (trap_exit_) {
      enqueue({kind::exit, pid, {}, body});
    } else if (reason.kind == exit_kind::unknown && !w.parent) {
      core::log_info(
          "linked process {} ended, how is not known (not our child, already reaped, "
          "no otpd to ask): not propagated",
          pid);
    } else if (!reason.is_normal()) {
      core::log_info("exiting: linked process {} ended ({})", pid, reason.to_string());
      exit_self(reason);
    }
  }
}

}  // namespace detail

using detail::ctx;

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

}  // namespace otpd::runtime

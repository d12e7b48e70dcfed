// Starting processes: spawn (a forked function with its own mailbox) and
// spawn_exec (a program that joins the node), plus kill and the readiness
// notification of programs started that way.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "detail.hpp"

#include <otpd/core/log.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/ready.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

using core::errc;
using core::errno_code;
using core::exit_kind;
using core::unique_fd;
using detail::context;
using detail::ctx;

Result<void> kill(pid_t pid, int sig) {
  if (::kill(pid, sig) != 0) {
    return errno == ESRCH ? core::make_error_code(errc::noproc) : errno_code();
  }
  return {};
}

void notify_ready() noexcept {
  (void)core::notify_ready();
}

Result<spawned_process> spawn(std::function<int()> fn, const spawn_options& options) {
  context& c = ctx();
  if (auto i = c.ensure_init(); !i) {
    return i.error();
  }
  static std::atomic<unsigned> counter{0};
  std::string tmp = protocol::layout::mailbox_dir(c.dir()) + "/.child." + std::to_string(c.self()) +
                    "." + std::to_string(counter.fetch_add(1));
  auto lfd = detail::listen_at(tmp);
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
  core::pipe_fds ready;
  constexpr int ready_fd_in_child = 3;
  if (options.wait_ready) {
    auto p = core::make_pipe();
    if (!p) {
      return p.error();
    }
    ready = std::move(*p);
    so.env.push_back(std::string(core::ready_fd_env) + "=" + std::to_string(ready_fd_in_child));
    so.fds.emplace_back(ready.write.get(), ready_fd_in_child);
  }
  auto s = core::spawn(so);
  if (!s) {
    // Callers of spawn_exec know a failed exec as errc::exec_failed.
    if (s.error().category() == core::exec_category()) {
      return {errc::exec_failed, s.message()};
    }
    return s.fail();
  }
  ready.write.reset();
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
    auto r = core::wait_ready(ready.read.get(), deadline::after(options.ready_timeout));
    if (!r) {
      if (r.error() == errc::timeout) {
        ::kill(pid, SIGKILL);
      }
      return r.error();
    }
  }
  return out;
}

}  // namespace otpd::runtime

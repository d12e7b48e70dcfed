#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <vector>

#include "detail.hpp"

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/ready.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/runtime/gen_server.hpp>

namespace otpd::runtime {

using core::errc;
using core::exit_kind;
using core::exit_reason;
using core::unique_fd;

void gen_server::handle_info(const message& msg) {
  core::log_warn("gen_server: unexpected {} message from pid {} ({} bytes); dropped",
                 to_string(msg.kind), msg.from, msg.body.size());
}

namespace {

// Callers whose last reply found their mailbox full until reply_timeout, and
// when that was. Bounded: a server talks to few callers at once, and losing
// an entry only costs one more bounded wait.
struct slow_caller {
  pid_t pid;
  core::clock::time_point since;
};
std::vector<slow_caller>& slow_callers() {
  static std::vector<slow_caller> v;
  return v;
}
constexpr std::size_t max_slow_callers = 64;

bool recently_slow(pid_t pid, core::clock::time_point now) {
  auto& v = slow_callers();
  std::erase_if(v, [now](const slow_caller& s) { return now - s.since > slow_caller_memory; });
  return std::any_of(v.begin(), v.end(), [pid](const slow_caller& s) { return s.pid == pid; });
}

void remember_slow(pid_t pid, core::clock::time_point now) {
  auto& v = slow_callers();
  if (v.size() >= max_slow_callers) {
    v.erase(v.begin());
  }
  v.push_back({pid, now});
}

}  // namespace

core::Result<void> reply(const from& caller, std::string_view body) {
  // One caller that does not read its mailbox must not stall the server for
  // every other caller (an Erlang send never blocks): wait at most
  // reply_timeout for room, and not at all for a caller that was that slow
  // within slow_caller_memory. A reply not delivered is logged by the caller
  // of reply(); the call then times out on its side.
  auto now = core::clock::now();
  bool slow = recently_slow(caller.pid, now);
  auto until =
      slow ? deadline::after(std::chrono::milliseconds(0)) : deadline::after(reply_timeout);
  auto sent = send_message(caller.pid, kind::reply, caller.ref, body, until);
  if (!sent && sent.error() == errc::timeout && !slow) {
    remember_slow(caller.pid, now);
  }
  return sent;
}

namespace {

using ready_fn = std::function<void(const core::Result<void>&, const std::string&)>;

// SIGTERM and SIGINT become messages, so an orderly stop runs terminate()
// between two callbacks instead of interrupting one.
unique_fd stop_signals_as_messages() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  unique_fd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (fd) {
    if (auto r = detail::set_signal_fd(fd.get()); !r) {
      core::log_warn("gen_server: unable to watch stop signals: {}", r.error().message());
    }
  }
  return fd;
}

int exit_code_of(const exit_reason& r) {
  switch (r.kind) {
    case exit_kind::normal:
    case exit_kind::shutdown:
      return 0;
    case exit_kind::exit_code:
      return r.value;
    default:
      return 1;
  }
}

int serve(gen_server& server, std::optional<exit_reason>& stop_flag, const ready_fn& ready) {
  if (auto i = init(); !i) {
    ready(i, "mailbox: " + i.error().message());
    return 1;
  }
  unique_fd sigfd = stop_signals_as_messages();
  core::Result<void> r = errc::start_failed;
  std::string why;
  try {
    r = server.init();
    if (!r) {
      why = r.error().message();
    }
  } catch (const std::exception& e) {
    r = errc::start_failed;
    why = e.what();
  }
  ready(r, why);
  if (!r) {
    core::log_error("gen_server: init failed: {}", why);
    return 1;
  }
  try {
    while (!stop_flag) {
      auto m = receive(deadline::never());
      if (!m) {
        continue;
      }
      switch (m->kind) {
        case kind::call: {
          auto answer = server.handle_call(*m, from{m->from, m->ref});
          if (answer) {
            // One line per slow caller and window, not per dropped reply:
            // a caller that never reads must not flood the log either.
            bool was_slow = recently_slow(m->from, core::clock::now());
            if (auto sent = reply(from{m->from, m->ref}, *answer); !sent && !was_slow) {
              if (sent.error() == errc::timeout) {
                core::log_warn(
                    "gen_server: pid {} does not read its mailbox: reply dropped after {} ms; "
                    "replies to it are dropped without waiting for the next {} s",
                    m->from, reply_timeout.count(),
                    std::chrono::duration_cast<std::chrono::seconds>(slow_caller_memory).count());
              } else {
                core::log_warn("gen_server: unable to reply to pid {}: {}", m->from,
                               sent.error().message());
              }
            }
          }
          break;
        }
        case kind::cast:
          server.handle_cast(*m);
          break;
        case kind::system: {
          auto sig = m->as<std::tuple<std::string, int>>();
          auto cmd = m->as<std::string>();
          if ((sig && std::get<0>(*sig) == "signal") || (cmd && *cmd == "stop")) {
            stop_flag = exit_reason{exit_kind::shutdown, 0};
          } else {
            server.handle_info(*m);
          }
          break;
        }
        default:
          server.handle_info(*m);
          break;
      }
    }
  } catch (const std::exception& e) {
    core::log_error("gen_server: crashed in a callback: {}", e.what());
    exit_reason crash = exit_reason::code(70);
    server.terminate(crash);
    return 70;
  }
  server.terminate(*stop_flag);
  return exit_code_of(*stop_flag);
}

}  // namespace

int run_server(gen_server& server) {
  return serve(server, server.stop_, [](const core::Result<void>& r, const std::string&) {
    if (r) {
      notify_ready();
    }
  });
}

core::Result<pid_t> start_server(std::function<std::unique_ptr<gen_server>()> factory,
                                 const server_options& options) {
  auto ready = core::make_pipe();
  if (!ready) {
    return ready.error();
  }
  int write_raw = ready->write.get();
  int read_raw = ready->read.get();
  spawn_options so;
  so.link = options.link;
  so.name = options.name;
  auto child = spawn(
      [&factory, write_raw, read_raw]() -> int {
        ::close(read_raw);
        std::unique_ptr<gen_server> server = factory();
        return run_server_with_ready(*server, write_raw);
      },
      so);
  ready->write.reset();
  if (!child) {
    return child.error();
  }
  pid_t pid = child->pid;
  // init() reports through the pipe: "\n" is success; EOF without it (an
  // error line, or it died) is a failed start.
  auto r = core::wait_ready(ready->read.get(), deadline::after(options.init_timeout));
  if (r) {
    return pid;
  }
  unique_fd fd = detail::forget_child(pid);
  if (fd) {
    (void)core::kill_and_reap(pid, SIGKILL, deadline::never(), fd.get());
  }
  return r.error();
}

int run_server_with_ready(gen_server& server, int ready_fd) {
  return serve(server, server.stop_,
               [ready_fd](const core::Result<void>& r, const std::string& why) {
                 // Only success may hold a newline: the parent reads any
                 // newline as "ready".
                 std::string line = r ? "\n" : "E" + why;
                 std::replace(line.begin() + 1, line.end(), '\n', ' ');
                 ssize_t n;
                 do {
                   n = ::write(ready_fd, line.data(), line.size());
                 } while (n < 0 && errno == EINTR);
                 ::close(ready_fd);
               });
}

namespace {
// The pid an address names now (a name is looked up each time).
core::Result<pid_t> pid_of(const address& a) {
  if (a.is_pid()) {
    return a.pid();
  }
  return whereis(a.name());
}
}  // namespace

core::Result<request_id> send_request(const address& server, std::string_view body) {
  auto found = pid_of(server);
  if (!found) {
    return errc::noproc;
  }
  pid_t pid = *found;
  // The monitor's ref is the call's ref: the reply and the DOWN both carry
  // it, and whichever comes first answers the request.
  request_id id{pid, monitor(pid)};
  if (auto sent = send_message(pid, kind::call, id.ref, body); !sent) {
    demonitor(id.ref, true);
    return sent.error();
  }
  return id;
}

bool answers(const message& m, const request_id& id) {
  return m.ref == id.ref && (m.kind == kind::reply || m.kind == kind::down);
}

core::Result<message> take_response(message&& m, const request_id& id, exit_reason* why) {
  if (m.kind == kind::down) {
    exit_reason r = m.reason();
    if (why != nullptr) {
      *why = r;
    }
    return r.kind == exit_kind::noproc ? errc::noproc : errc::crashed;
  }
  demonitor(id.ref, true);
  return std::move(m);
}

core::Result<message> receive_response(const request_id& id, deadline until, exit_reason* why) {
  predicate mine = [&id](const message& m) { return answers(m, id); };
  auto m = receive(mine, until);
  if (!m) {
    demonitor(id.ref, true);
    detail::abandon(id.ref);
    return m.error();
  }
  return take_response(std::move(*m), id, why);
}

core::Result<message> call_message(const address& server, std::string_view body,
                                   std::chrono::milliseconds timeout, exit_reason* why) {
  auto until = deadline::after(timeout);
  auto id = send_request(server, body);
  if (!id) {
    if (why != nullptr) {
      *why = {exit_kind::noproc, 0};
    }
    return id.error();
  }
  return receive_response(*id, until, why);
}

core::Result<void> stop_server(const address& server, std::chrono::milliseconds timeout) {
  auto until = deadline::after(timeout);
  auto found = pid_of(server);
  if (!found) {
    return found.error();
  }
  pid_t pid = *found;
  ref mon = monitor(pid);
  if (auto sent = send_message(pid, kind::system, {}, pack(std::string("stop")), until); !sent) {
    demonitor(mon, true);
    return sent.error();
  }
  auto m = receive_ref(mon, until);
  if (!m) {
    demonitor(mon, true);
    return m.error();
  }
  return {};
}

}  // namespace otpd::runtime

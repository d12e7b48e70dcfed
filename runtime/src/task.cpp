#include <signal.h>

#include <cstdio>
#include <exception>
#include <memory>

#include "detail.hpp"

#include <otpd/core/log.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/runtime/task.hpp>

namespace otpd::runtime::detail {

using core::errc;

task_base::task_base(std::function<std::string()> body) {
  result_ref_ = make_ref();
  if (auto i = init(); !i) {
    done_ = true;
    error_ = i.error();
    return;
  }
  pid_t parent = self();
  ref r = result_ref_;
  core::spawn_options so;
  so.new_process_group = false;  // within our group: a group kill reaches tasks too
  so.death_signal = SIGKILL;     // a task dies with its caller (Elixir links them)
  std::fflush(nullptr);          // or the child writes our unflushed stdio again
  auto s = core::spawn_function(so, [&]() -> int {
    std::string bytes;
    try {
      bytes = body();
    } catch (const std::exception& e) {
      core::log_error("task crashed: uncaught exception: {}", e.what());
      return 70;
    } catch (...) {
      core::log_error("task crashed: uncaught exception");
      return 70;
    }
    auto sent = send_message(parent, kind::result, r, bytes, deadline::never());
    return sent ? 0 : 71;
  });
  if (!s) {
    done_ = true;
    error_ = s.error();
    return;
  }
  pid_ = s->pid;
  if (auto a = adopt(pid_, std::move(s->pidfd)); !a) {
    done_ = true;
    error_ = a.error();
    return;
  }
  monitor_ref_ = monitor(pid_);
}

task_base::task_base(task_base&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      result_ref_(o.result_ref_),
      monitor_ref_(o.monitor_ref_),
      done_(std::exchange(o.done_, true)),
      have_result_(o.have_result_),
      result_(std::move(o.result_)),
      reason_(o.reason_),
      error_(o.error_) {}

task_base& task_base::operator=(task_base&& o) noexcept {
  if (this != &o) {
    abandon();
    pid_ = std::exchange(o.pid_, -1);
    result_ref_ = o.result_ref_;
    monitor_ref_ = o.monitor_ref_;
    done_ = std::exchange(o.done_, true);
    have_result_ = o.have_result_;
    result_ = std::move(o.result_);
    reason_ = o.reason_;
    error_ = o.error_;
  }
  return *this;
}

task_base::~task_base() {
  abandon();
}

void task_base::abandon() noexcept {
  if (pid_ <= 0 || done_) {
    return;
  }
  ::kill(pid_, SIGKILL);
  finish_child();
  done_ = true;
}

// Reaps our child (it has ended or is about to) and drops its monitor and
// any DOWN of it, so nothing of the task is left behind.
void task_base::finish_child() {
  core::unique_fd fd = forget_child(pid_);
  if (fd) {
    (void)core::reap(fd.get());
  }
  demonitor(monitor_ref_, true);
}

bool task_base::absorb(message&& m) {
  if (m.kind == kind::result && m.ref == result_ref_) {
    have_result_ = true;
    result_ = std::move(m.body);
    reason_ = core::exit_reason::normal();
    finish_child();
    done_ = true;
    return true;
  }
  if (m.kind == kind::down && m.ref == monitor_ref_) {
    reason_ = m.reason();
    error_ = core::make_error_code(errc::crashed);
    done_ = true;
    return true;
  }
  return false;
}

core::Result<std::string> task_base::outcome() const {
  if (have_result_) {
    return result_;
  }
  return error_ ? error_ : core::make_error_code(errc::crashed);
}

core::Result<std::string> task_base::await_bytes(deadline until, bool kill_on_timeout) {
  if (done_) {
    return outcome();
  }
  predicate mine = [this](const message& m) {
    return (m.kind == kind::result && m.ref == result_ref_) ||
           (m.kind == kind::down && m.ref == monitor_ref_);
  };
  auto m = receive(mine, until);
  if (m) {
    absorb(std::move(*m));
    return outcome();
  }
  if (!kill_on_timeout) {
    return errc::timeout;
  }
  // Kill, reap, then look once more: a result written just before the kill
  // sits in our socket buffer and must not be lost (nor its DOWN left queued).
  ::kill(pid_, SIGKILL);
  finish_child();
  drain();
  predicate result_only = [this](const message& x) {
    return x.kind == kind::result && x.ref == result_ref_;
  };
  if (auto late = receive(result_only, deadline::after(std::chrono::milliseconds(0))); late) {
    have_result_ = true;
    result_ = std::move(late->body);
    reason_ = core::exit_reason::normal();
  } else {
    reason_ = core::exit_reason::from_signal(SIGKILL);
    error_ = core::make_error_code(errc::timeout);
  }
  done_ = true;
  return outcome();
}

std::vector<std::pair<core::Result<std::string>, core::exit_reason>> run_parallel(
    std::vector<std::function<std::string()>> bodies, std::size_t max_procs,
    std::chrono::milliseconds timeout) {
  if (max_procs == 0) {
    max_procs = 1;
  }
  std::vector<std::pair<core::Result<std::string>, core::exit_reason>> out;
  out.reserve(bodies.size());
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    out.emplace_back(core::Result<std::string>(errc::timeout), core::exit_reason{});
  }
  struct running {
    std::size_t index;
    std::unique_ptr<task_base> t;
    core::clock::time_point until;
  };
  std::vector<running> active;
  std::size_t next = 0;
  auto finish = [&](std::size_t k) {
    out[active[k].index] = {active[k].t->outcome(), active[k].t->reason()};
    active.erase(active.begin() + static_cast<std::ptrdiff_t>(k));
  };
  while (next < bodies.size() || !active.empty()) {
    while (active.size() < max_procs && next < bodies.size()) {
      active.push_back(
          {next, std::make_unique<task_base>(bodies[next]), core::clock::now() + timeout});
      ++next;
      if (active.back().t->done()) {
        finish(active.size() - 1);
      }
    }
    if (active.empty()) {
      continue;
    }
    core::clock::time_point earliest = active.front().until;
    for (const auto& a : active) {
      earliest = std::min(earliest, a.until);
    }
    predicate any = [&active](const message& m) {
      for (const auto& a : active) {
        if ((m.kind == kind::result && m.ref == a.t->id()) ||
            (m.kind == kind::down && m.ref == a.t->monitor_ref())) {
          return true;
        }
      }
      return false;
    };
    auto m = receive(any, deadline(earliest));
    if (m) {
      for (std::size_t k = 0; k < active.size(); ++k) {
        if (active[k].t->absorb(std::move(*m))) {
          finish(k);
          break;
        }
      }
      continue;
    }
    // The earliest deadline passed: kill that task (keeping a late result).
    for (std::size_t k = 0; k < active.size(); ++k) {
      if (active[k].until <= core::clock::now()) {
        (void)active[k].t->await_bytes(deadline::after(std::chrono::milliseconds(0)), true);
        finish(k);
        break;
      }
    }
  }
  return out;
}

}  // namespace otpd::runtime::detail

#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/result.hpp>
#include <otpd/runtime/message.hpp>
#include <otpd/runtime/process.hpp>

// Tasks: a function run in a forked child whose serialized result comes back
// as a message (Elixir's Task / the training's Async, ParallelEnum).
namespace otpd::runtime {

namespace detail {
// The untyped core of a task: the child runs body() and sends its bytes.
class task_base {
 public:
  task_base() = default;
  explicit task_base(std::function<std::string()> body);
  task_base(task_base&& other) noexcept;
  task_base& operator=(task_base&& other) noexcept;
  task_base(const task_base&) = delete;
  task_base& operator=(const task_base&) = delete;
  // An unfinished task is killed and reaped: no zombie outlives its handle.
  ~task_base();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const ref& id() const { return result_ref_; }
  [[nodiscard]] const ref& monitor_ref() const { return monitor_ref_; }
  // Why the task failed (crashed: its exit reason; timeout: not finished).
  [[nodiscard]] const core::exit_reason& reason() const { return reason_; }
  [[nodiscard]] bool done() const { return done_; }

  core::Result<std::string> await_bytes(deadline until, bool kill_on_timeout);
  // Takes a message that belongs to this task (result or DOWN); true if it did.
  bool absorb(message&& m);
  [[nodiscard]] core::Result<std::string> outcome() const;

 private:
  void finish_child();
  void abandon() noexcept;

  pid_t pid_ = -1;
  ref result_ref_;
  ref monitor_ref_;
  bool done_ = false;
  bool have_result_ = false;
  std::string result_;
  core::exit_reason reason_;
  std::error_code error_;
};
}  // namespace detail

template <class R>
class task {
 public:
  explicit task(detail::task_base base) : base_(std::move(base)) {}
  [[nodiscard]] pid_t pid() const { return base_.pid(); }
  [[nodiscard]] const core::exit_reason& reason() const { return base_.reason(); }

  // The value, errc::timeout (the task keeps running; await again or kill
  // it), or errc::crashed (reason() says how it ended).
  core::Result<R> await(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    return decode(base_.await_bytes(deadline::after(timeout), false));
  }
  // As await, but on timeout the task is killed and reaped; a result that
  // arrived while it was being killed is still returned.
  core::Result<R> await_or_kill(std::chrono::milliseconds timeout) {
    return decode(base_.await_bytes(deadline::after(timeout), true));
  }
  detail::task_base& base() { return base_; }

 private:
  static core::Result<R> decode(core::Result<std::string> bytes) {
    if (!bytes) {
      return bytes.error();
    }
    return unpack<R>(*bytes);
  }
  detail::task_base base_;
};

// Runs fn() in a child process; its result (msgpack-able) comes back to us.
template <class F>
auto async(F fn) -> task<std::invoke_result_t<F>> {
  using R = std::invoke_result_t<F>;
  return task<R>(detail::task_base([fn = std::move(fn)]() { return pack<R>(fn()); }));
}

// One element's outcome in parallel_map: the value, or the error with the
// child's exit reason.
template <class R>
struct task_outcome {
  core::Result<R> value;
  core::exit_reason reason;
};

namespace detail {
// Runs bodies with at most max_procs children at a time; outcomes in order.
std::vector<std::pair<core::Result<std::string>, core::exit_reason>> run_parallel(
    std::vector<std::function<std::string()>> bodies, std::size_t max_procs,
    std::chrono::milliseconds timeout);
}  // namespace detail

// fn over every element, each in its own process, at most max_procs at once.
// The outcomes keep the input's order; a failing element does not fail others.
template <class In, class F>
auto parallel_map(const std::vector<In>& in, F fn, std::size_t max_procs,
                  std::chrono::milliseconds timeout_each = std::chrono::milliseconds(30000))
    -> std::vector<task_outcome<std::invoke_result_t<F, const In&>>> {
  using R = std::invoke_result_t<F, const In&>;
  std::vector<std::function<std::string()>> bodies;
  bodies.reserve(in.size());
  for (const auto& x : in) {
    bodies.emplace_back([&fn, &x]() { return pack<R>(fn(x)); });
  }
  auto raw = detail::run_parallel(std::move(bodies), max_procs, timeout_each);
  std::vector<task_outcome<R>> out;
  out.reserve(raw.size());
  for (auto& [bytes, reason] : raw) {
    if (bytes) {
      out.push_back({unpack<R>(*bytes), reason});
    } else {
      out.push_back({core::Result<R>(bytes.error()), reason});
    }
  }
  return out;
}

}  // namespace otpd::runtime

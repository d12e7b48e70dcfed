// Timers (Process.send_after to self): pending timers sorted by due time, one
// timerfd in the epoll set armed for the earliest. A due timer becomes a
// kind::user message in our own queue, in order with everything else.
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "detail.hpp"

#include <otpd/core/clock.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

namespace detail {

ref context::start_timer(std::chrono::milliseconds after, std::string_view body) {
  ref r = make_ref();
  if (auto i = ensure_init(); !i) {
    return r;
  }
  if (!timer_fd_) {
    timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    (void)watch_fd(tag::timer, timer_fd_.get());
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

}  // namespace detail

using detail::ctx;

ref start_timer(milliseconds after, std::string_view body) {
  return ctx().start_timer(after, body);
}
bool cancel_timer(const ref& r) {
  return ctx().cancel_timer(r);
}

}  // namespace otpd::runtime

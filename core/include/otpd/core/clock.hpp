#pragma once

#include <chrono>
#include <cstdint>

namespace otpd::core {

using clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// A point in time to give up at. Waits are always bounded by a deadline,
// never by a sleep.
class deadline {
 public:
  static deadline after(clock::duration d) { return deadline(clock::now() + d); }
  static deadline never() { return deadline(clock::time_point::max()); }
  explicit deadline(clock::time_point at) : at_(at) {}

  [[nodiscard]] bool expired() const { return clock::now() >= at_; }
  [[nodiscard]] bool is_never() const { return at_ == clock::time_point::max(); }
  [[nodiscard]] clock::time_point at() const { return at_; }
  // Milliseconds left for poll(2): -1 for never, 0 once expired (rounded up,
  // so a 0.3 ms remainder still waits instead of spinning).
  [[nodiscard]] int poll_timeout_ms() const;

 private:
  clock::time_point at_;
};

// A duration as whole milliseconds, rounded up, 0 when it is not positive:
// a timer armed with it (uv_timer_start) never fires before the deadline it
// stands for.
[[nodiscard]] std::uint64_t ceil_ms(clock::duration d) noexcept;

// Monotonic nanoseconds, for timestamps that cross processes (CLOCK_MONOTONIC
// is shared by every process of the machine).
[[nodiscard]] std::int64_t monotonic_ns() noexcept;

}  // namespace otpd::core

#include <time.h>

#include <otpd/core/clock.hpp>

namespace otpd::core {

int deadline::poll_timeout_ms() const {
  if (is_never()) {
    return -1;
  }
  auto left = at_ - clock::now();
  if (left <= clock::duration::zero()) {
    return 0;
  }
  auto ms = std::chrono::ceil<milliseconds>(left).count();
  return ms > 0x7fffffff ? 0x7fffffff : static_cast<int>(ms);
}

std::uint64_t ceil_ms(clock::duration d) noexcept {
  if (d <= clock::duration::zero()) {
    return 0;
  }
  return static_cast<std::uint64_t>(std::chrono::ceil<milliseconds>(d).count());
}

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace otpd::core

#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <otpd/core/result.hpp>

namespace otpd::workers {

// cache_worker's requests, decoded from untrusted mailbox bodies.
//   call ["get", key] | ["delete", key] | ["size"]
//   cast ["put", key, value] | ["put", key, value, ttl_ms]
enum class cache_op { get, erase, size };

struct cache_call {
  cache_op op = cache_op::size;
  std::string key;  // the raw msgpack of the key term (empty for size)
};

struct cache_put {
  std::string key;    // raw msgpack of the key term
  std::string value;  // raw msgpack of the value term
  // Unset: no expiry (absent, zero or negative ttl_ms). Clamped to max_ttl so
  // that now() + ttl cannot overflow the clock.
  std::optional<std::chrono::milliseconds> ttl;
};

inline constexpr std::chrono::milliseconds max_ttl = std::chrono::hours(24 * 365 * 100);

// errc::malformed for anything but the shapes above (never an exception).
[[nodiscard]] core::Result<cache_call> decode_cache_call(std::string_view body) noexcept;
[[nodiscard]] core::Result<cache_put> decode_cache_cast(std::string_view body) noexcept;

}  // namespace otpd::workers

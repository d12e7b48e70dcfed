#pragma once

#include <cassert>
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace otpd::core {

// otpd's own error codes. The numbers are stable: they cross process
// boundaries (mailbox errors, control-socket answers), so never renumber.
enum class errc : int {
  ok = 0,
  timeout = 1,            // a deadline passed
  noproc = 2,             // the target process does not exist (or has no mailbox)
  closed = 3,             // the peer closed the connection
  malformed = 4,          // bytes that do not decode
  too_large = 5,          // a message or value over its bound
  would_block = 6,        // non-blocking operation could not proceed
  exec_failed = 7,        // a spawned program could not be executed
  start_failed = 8,       // a process failed its init / readiness
  crashed = 9,            // the peer died (the exit reason says how)
  not_found = 10,         // no such key / name / id
  already_exists = 11,    // a name or key that is taken
  invalid_argument = 12,  // a bad request
  table_full = 13,        // a bounded table is full
  access_denied = 14,     // not allowed (protected table, peer uid)
  disconnected = 15,      // a client is not connected
  protocol = 16,          // the peer broke the protocol
  shutting_down = 17,     // the service is stopping
  busy = 18,              // a lock or a resource is held
};

[[nodiscard]] const std::error_category& otpd_category() noexcept;
[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), otpd_category()};
}
[[nodiscard]] const char* to_string(errc e) noexcept;

// errno (or a given errno value) as an error_code in the system category.
[[nodiscard]] inline std::error_code errno_code(int e = errno) noexcept {
  return {e, std::system_category()};
}

// A value or an error, shaped like C++23 std::expected (g++ 12 in C++20 mode
// has none). Holds an std::error_code as the error, plus an optional message
// for the humans reading logs.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(std::error_code ec) : v_(ec) { assert(ec); }  // NOLINT
  Result(errc e) : v_(make_error_code(e)) {}           // NOLINT

  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  [[nodiscard]] T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  [[nodiscard]] const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  [[nodiscard]] T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  [[nodiscard]] std::error_code error() const noexcept {
    return has_value() ? std::error_code{} : std::get<1>(v_);
  }
  template <class U>
  T value_or(U&& other) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(other));
  }

 private:
  std::variant<T, std::error_code> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(std::error_code ec) : ec_(ec) {}      // NOLINT
  Result(errc e) : ec_(make_error_code(e)) {}  // NOLINT
  [[nodiscard]] bool has_value() const noexcept { return !ec_; }
  explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] std::error_code error() const noexcept { return ec_; }

 private:
  std::error_code ec_;
};

}  // namespace otpd::core

template <>
struct std::is_error_code_enum<otpd::core::errc> : std::true_type {};

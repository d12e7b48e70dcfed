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
  corrupt = 19,           // shared data that breaks its own invariants (a damaged shm segment)
};
// The highest errc: codecs that carry an errc across processes accept 1..last.
inline constexpr errc errc_last = errc::corrupt;

[[nodiscard]] const std::error_category& otpd_category() noexcept;
[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), otpd_category()};
}
[[nodiscard]] const char* to_string(errc e) noexcept;

// errno (or a given errno value) as an error_code in the system category.
[[nodiscard]] inline std::error_code errno_code(int e = errno) noexcept {
  return {e, std::system_category()};
}

// The error side of a Result: a code for programs, and an optional message
// for the humans reading logs ("config.yaml:3:5: children[0].id: missing").
struct failure {
  std::error_code code;
  std::string text;  // empty: the code's own message says it all

  [[nodiscard]] std::string message() const { return text.empty() ? code.message() : text; }
};

// A value or an error, shaped like C++23 std::expected (g++ 12 in C++20 mode
// has none). The error is an std::error_code plus an optional message, so
// that a module boundary needs no `std::string& message` out-parameter.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(std::error_code ec) : v_(failure{ec, {}}) { assert(ec); }  // NOLINT
  Result(errc e) : v_(failure{make_error_code(e), {}}) {}           // NOLINT
  Result(std::error_code ec, std::string message) : v_(failure{ec, std::move(message)}) {
    assert(ec);
  }
  Result(errc e, std::string message) : v_(failure{make_error_code(e), std::move(message)}) {}
  Result(failure f) : v_(std::move(f)) { assert(std::get<1>(v_).code); }  // NOLINT

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
    return has_value() ? std::error_code{} : std::get<1>(v_).code;
  }
  // The message for humans: the one given with the error, else the code's
  // own; empty for a value.
  [[nodiscard]] std::string message() const {
    return has_value() ? std::string() : std::get<1>(v_).message();
  }
  // The error with its message, to pass on as another Result's error.
  [[nodiscard]] failure fail() const {
    assert(!has_value());
    return std::get<1>(v_);
  }
  template <class U>
  T value_or(U&& other) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(other));
  }

 private:
  std::variant<T, failure> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(std::error_code ec) : f_{ec, {}} {}      // NOLINT
  Result(errc e) : f_{make_error_code(e), {}} {}  // NOLINT
  Result(std::error_code ec, std::string message) : f_{ec, std::move(message)} {}
  Result(errc e, std::string message) : f_{make_error_code(e), std::move(message)} {}
  Result(failure f) : f_(std::move(f)) {}  // NOLINT
  [[nodiscard]] bool has_value() const noexcept { return !f_.code; }
  explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] std::error_code error() const noexcept { return f_.code; }
  [[nodiscard]] std::string message() const { return has_value() ? std::string() : f_.message(); }
  [[nodiscard]] failure fail() const {
    assert(!has_value());
    return f_;
  }

 private:
  failure f_;
};

}  // namespace otpd::core

template <>
struct std::is_error_code_enum<otpd::core::errc> : std::true_type {};

#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/result.hpp>

namespace otpd::redis_client {

// The shapes a RESP2 reply takes. An error reply is a value like any other:
// it says the server refused this command, not that the connection broke.
enum class reply_type : std::uint8_t { status, error, integer, string, nil, array };

[[nodiscard]] const char* to_string(reply_type t) noexcept;

// One reply, copied out of hiredis' reply tree so it outlives hiredis' buffers.
// `str` holds status, error and (binary-safe) bulk string bytes.
struct reply {
  reply_type type = reply_type::nil;
  std::int64_t integer = 0;
  std::string str;
  std::vector<reply> elements;

  static reply status(std::string s) { return {reply_type::status, 0, std::move(s), {}}; }
  static reply error(std::string s) { return {reply_type::error, 0, std::move(s), {}}; }
  static reply bulk(std::string s) { return {reply_type::string, 0, std::move(s), {}}; }
  static reply of_integer(std::int64_t i) { return {reply_type::integer, i, {}, {}}; }
  static reply nil() { return {}; }
  static reply array(std::vector<reply> e) { return {reply_type::array, 0, {}, std::move(e)}; }

  [[nodiscard]] bool is_error() const noexcept { return type == reply_type::error; }
  [[nodiscard]] bool is_nil() const noexcept { return type == reply_type::nil; }
  [[nodiscard]] bool is_string() const noexcept { return type == reply_type::string; }
  [[nodiscard]] bool is_status() const noexcept { return type == reply_type::status; }
  [[nodiscard]] bool is_integer() const noexcept { return type == reply_type::integer; }
  [[nodiscard]] bool is_array() const noexcept { return type == reply_type::array; }

  // The way redis-cli prints it: "PONG", "(nil)", "(integer) 3", "(error) ERR ...",
  // "\"bulk\"" with escapes, arrays as numbered lines.
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const reply&, const reply&) = default;
};

// A command's reply, or why there is none: errc::disconnected (never connected,
// or the connection dropped with the request in flight), errc::timeout (its
// deadline passed), errc::closed (the server closed the connection),
// errc::protocol, errc::busy (a bounded queue was full), errc::shutting_down
// (the client was destroyed or stopped), or a system error_code.
using reply_result = core::Result<reply>;
using reply_callback = std::function<void(reply_result)>;

// The argument vector of one command, referring to the caller's bytes (valid
// for the duration of the call that takes it). Binary-safe: lengths, not NULs.
class command_args {
 public:
  command_args(
      std::initializer_list<std::string_view> args);        // NOLINT(google-explicit-constructor)
  command_args(const std::vector<std::string>& args);       // NOLINT(google-explicit-constructor)
  command_args(const std::vector<std::string_view>& args);  // NOLINT(google-explicit-constructor)

  [[nodiscard]] int argc() const noexcept { return static_cast<int>(lens_.size()); }
  [[nodiscard]] const char** argv() noexcept { return ptrs_.data(); }
  [[nodiscard]] const std::size_t* lens() const noexcept { return lens_.data(); }
  [[nodiscard]] bool empty() const noexcept { return lens_.empty(); }

 private:
  template <class It>
  void assign(It first, It last);
  std::vector<const char*> ptrs_;
  std::vector<std::size_t> lens_;
};

}  // namespace otpd::redis_client

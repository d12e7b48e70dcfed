#pragma once

#include <string>
#include <string_view>

#include <msgpack.hpp>

#include <otpd/core/result.hpp>

namespace otpd::runtime {

// Message bodies are msgpack: it carries Erlang-like terms (integers,
// binaries, strings, lists, maps, tuples as arrays) and every language reads it.

template <class T>
[[nodiscard]] std::string pack(const T& value) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, value);
  return {buf.data(), buf.size()};
}

// Decodes bytes into T. Malformed bytes or a term of another shape are an
// error value (errc::malformed), never an exception to the caller.
template <class T>
[[nodiscard]] core::Result<T> unpack(std::string_view bytes) noexcept {
  try {
    msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
    return oh.get().as<T>();
  } catch (...) {
    return core::errc::malformed;
  }
}

// True when bytes hold exactly one well-formed msgpack term (or nothing).
// Checks without building the term, so it is cheap enough for every message.
[[nodiscard]] bool is_valid_term(std::string_view bytes) noexcept;

}  // namespace otpd::runtime

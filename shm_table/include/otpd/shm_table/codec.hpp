#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <otpd/core/msgpack.hpp>
#include <otpd/core/result.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

// Typed helpers over the byte keys and values. Strings are their bytes.

// A 64-bit integer value, 8 bytes little endian: what update_counter counts.
[[nodiscard]] inline std::string encode_int(std::int64_t v) {
  std::string s(8, '\0');
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) {
    s[static_cast<std::size_t>(i)] = static_cast<char>((u >> (8 * i)) & 0xff);
  }
  return s;
}
[[nodiscard]] inline std::optional<std::int64_t> decode_int(std::string_view s) {
  if (s.size() != 8) {
    return std::nullopt;
  }
  std::uint64_t u = 0;
  for (int i = 7; i >= 0; --i) {
    u = (u << 8) | static_cast<unsigned char>(s[static_cast<std::size_t>(i)]);
  }
  return static_cast<std::int64_t>(u);
}

// An integer key whose bytes sort like the number (big endian, sign bit
// flipped), so an ordered_set keyed by it is in numeric order.
[[nodiscard]] inline std::string encode_ordered_int(std::int64_t v) {
  auto u = static_cast<std::uint64_t>(v) ^ (std::uint64_t{1} << 63);
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) {
    s[static_cast<std::size_t>(i)] = static_cast<char>((u >> (8 * (7 - i))) & 0xff);
  }
  return s;
}
[[nodiscard]] inline std::optional<std::int64_t> decode_ordered_int(std::string_view s) {
  if (s.size() != 8) {
    return std::nullopt;
  }
  std::uint64_t u = 0;
  for (char c : s) {
    u = (u << 8) | static_cast<unsigned char>(c);
  }
  return static_cast<std::int64_t>(u ^ (std::uint64_t{1} << 63));
}

// Any msgpack-cxx convertible value (Erlang-like terms: ints, strings,
// arrays, maps, tuples) as msgpack bytes.
template <class T>
[[nodiscard]] std::string pack_term(const T& v) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, v);
  return std::string(buf.data(), buf.size());
}
// nullopt when the bytes are not a msgpack value convertible to T.
template <class T>
[[nodiscard]] std::optional<T> unpack_term(std::string_view bytes) {
  try {
    msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
    return oh.get().as<T>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

template <class T>
[[nodiscard]] Result<void> insert_term(table& t, std::string_view key, const T& v,
                                       std::chrono::milliseconds ttl = {}) {
  return t.insert(key, pack_term(v), ttl);
}
template <class T>
[[nodiscard]] std::optional<T> lookup_term(const table& t, std::string_view key) {
  auto v = t.lookup(key);
  if (!v) {
    return std::nullopt;
  }
  return unpack_term<T>(*v);
}
[[nodiscard]] inline std::optional<std::int64_t> lookup_int(const table& t, std::string_view key) {
  auto v = t.lookup(key);
  return v ? decode_int(*v) : std::nullopt;
}

}  // namespace otpd::shm_table

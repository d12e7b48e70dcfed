#pragma once

#include <string>
#include <string_view>

#include <otpd/core/msgpack.hpp>
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

// The one set of bounds every decoder of untrusted bodies uses: container
// element counts, string/bin/ext sizes and nesting depth. Generous enough for
// every legal message (bodies up to 64 MiB, terms nested 256 deep), small
// enough that no declared size makes the decoder reserve memory out of
// proportion to the bytes it was given.
[[nodiscard]] const msgpack::unpack_limit& decode_limits() noexcept;

// Checks that bytes hold exactly one msgpack term within decode_limits(),
// without building it. Also refuses a term whose declared array and map
// counts add up to more elements than there are bytes left (each element
// takes at least one byte): msgpack-cxx reserves a container's declared
// count before reading it, so a 5-byte body declaring 2^31 elements would
// otherwise ask for ~50 GiB. errc::malformed when not.
[[nodiscard]] core::Result<void> check_term(std::string_view bytes) noexcept;

// Decodes one term from untrusted bytes: check_term, then msgpack::unpack
// under decode_limits(). Strings and bins are copied into the handle, so it
// does not borrow bytes. errc::malformed on any failure, never an exception.
[[nodiscard]] core::Result<msgpack::object_handle> decode_term(std::string_view bytes) noexcept;

namespace detail {
// The zone one unpack<T> decodes into: the calling thread's own, reused
// from one message to the next (no allocation per message once it holds the
// largest term seen), or a fresh one when a decode is already under way on
// this thread (a converter that unpacks in turn).
class decode_zone {
 public:
  decode_zone();
  ~decode_zone();
  decode_zone(const decode_zone&) = delete;
  decode_zone& operator=(const decode_zone&) = delete;
  msgpack::zone& get() noexcept { return *zone_; }

 private:
  msgpack::zone* zone_;
  bool owned_;
};
// decode_term into z: the object lives as long as z is not cleared.
[[nodiscard]] core::Result<msgpack::object> decode_term(msgpack::zone& z,
                                                        std::string_view bytes) noexcept;
}  // namespace detail

// Decodes bytes into T (through decode_term). Malformed bytes or a term of
// another shape are an error value (errc::malformed), never an exception.
template <class T>
[[nodiscard]] core::Result<T> unpack(std::string_view bytes) noexcept {
  try {
    detail::decode_zone z;
    auto o = detail::decode_term(z.get(), bytes);
    if (!o) {
      return o.error();
    }
    return o->template as<T>();
  } catch (...) {
    return core::errc::malformed;
  }
}

// True when bytes hold nothing or pass check_term. Checks without building
// the term, so it is cheap enough for every message.
[[nodiscard]] bool is_valid_term(std::string_view bytes) noexcept;

}  // namespace otpd::runtime

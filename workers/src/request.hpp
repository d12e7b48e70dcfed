#pragma once

#include <string_view>

#include <otpd/core/msgpack.hpp>

namespace otpd::workers::detail {

// The request's words: o is an array of n elements whose first is the string
// op. Reads nothing out of bounds whatever o is.
inline bool is_request(const msgpack::object& o, std::string_view op, std::uint32_t n) {
  return o.type == msgpack::type::ARRAY && o.via.array.size == n &&
         o.via.array.ptr[0].type == msgpack::type::STR &&
         std::string_view(o.via.array.ptr[0].via.str.ptr, o.via.array.ptr[0].via.str.size) == op;
}

}  // namespace otpd::workers::detail

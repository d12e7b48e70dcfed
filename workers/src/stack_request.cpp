#include "request.hpp"

#include <otpd/runtime/term.hpp>
#include <otpd/workers/stack_request.hpp>

namespace otpd::workers {

using detail::is_request;

core::Result<stack_op> decode_stack_call(std::string_view body) noexcept {
  auto oh = runtime::decode_term(body);
  if (!oh) {
    return oh.error();
  }
  const msgpack::object& o = oh->get();
  // A bare word is accepted too: otpctl sends one as a string.
  auto word = [&o](std::string_view op) {
    return is_request(o, op, 1) ||
           (o.type == msgpack::type::STR && std::string_view(o.via.str.ptr, o.via.str.size) == op);
  };
  if (word("pop")) {
    return stack_op::pop;
  }
  if (word("size")) {
    return stack_op::size;
  }
  return core::errc::malformed;
}

core::Result<std::string> decode_stack_cast(std::string_view body) noexcept {
  auto oh = runtime::decode_term(body);
  if (!oh) {
    return oh.error();
  }
  const msgpack::object& o = oh->get();
  if (!is_request(o, "push", 2)) {
    return core::errc::malformed;
  }
  try {
    return runtime::pack(o.via.array.ptr[1]);
  } catch (...) {
    return core::errc::malformed;
  }
}

}  // namespace otpd::workers

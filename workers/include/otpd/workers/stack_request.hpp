#pragma once

#include <string>
#include <string_view>

#include <otpd/core/result.hpp>

namespace otpd::workers {

// stack_worker's requests, decoded from untrusted mailbox bodies.
//   call ["pop"] | ["size"] (or the bare string "pop" / "size")
//   cast ["push", term]
enum class stack_op { pop, size };

// errc::malformed for anything but the shapes above (never an exception).
[[nodiscard]] core::Result<stack_op> decode_stack_call(std::string_view body) noexcept;
// The raw msgpack of the pushed term.
[[nodiscard]] core::Result<std::string> decode_stack_cast(std::string_view body) noexcept;

}  // namespace otpd::workers

// stack_worker's request decoders on arbitrary bodies.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <tuple>

#include <otpd/workers/stack_request.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::ignore = otpd::workers::decode_stack_call(body);
  std::ignore = otpd::workers::decode_stack_cast(body);
  return 0;
}

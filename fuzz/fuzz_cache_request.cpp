// cache_worker's request decoders on arbitrary bodies.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <tuple>

#include <otpd/workers/cache_request.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::ignore = otpd::workers::decode_cache_call(body);
  std::ignore = otpd::workers::decode_cache_cast(body);
  return 0;
}

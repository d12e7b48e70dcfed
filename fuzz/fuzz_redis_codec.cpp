// redis_pool's codec on arbitrary bodies: decoding never crashes, and a reply
// that decodes re-encodes to a body that decodes to the same reply.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <tuple>

#include <otpd/redis_pool/codec.hpp>

namespace rp = otpd::redis_pool;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::ignore = rp::decode_request(body);
  auto r = rp::decode_reply(body);
  if (r) {
    auto again = rp::decode_reply(rp::encode_reply(*r));
    if (!again || !(*again == *r)) {
      std::abort();
    }
  }
  return 0;
}

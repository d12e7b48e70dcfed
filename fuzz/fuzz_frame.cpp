// The mailbox's receive path on arbitrary stream bytes: frames cut as the
// mailbox cuts them, each body checked and decoded as a receiver would.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <tuple>

#include "wire.hpp"

#include <otpd/runtime/message.hpp>
#include <otpd/runtime/term.hpp>

namespace rt = otpd::runtime;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view buf(reinterpret_cast<const char*>(data), size);
  while (true) {
    auto f = rt::wire::next_frame(buf);
    if (f.status != rt::wire::cut::frame) {
      break;
    }
    buf.remove_prefix(sizeof f.h + f.body.size());
    if (!rt::is_valid_term(f.body)) {
      continue;
    }
    rt::message m{static_cast<rt::kind>(f.h.kind), f.h.from, rt::ref{f.h.ref_hi, f.h.ref_lo},
                  std::string(f.body)};
    std::ignore = m.reason();
    std::ignore = rt::decode_term(m.body);
  }
  return 0;
}

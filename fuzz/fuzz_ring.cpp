// The receiving side of a mailbox ring on an arbitrary ring image: the
// control words a hostile sender controls (tail, and head as the receiver
// starts from it) and the data bytes. Reads go through ring::next exactly as
// the mailbox reads, over a buffer laid out like the double mapping; any read
// outside it is an ASan report.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "ring.hpp"

#include <otpd/runtime/message.hpp>
#include <otpd/runtime/term.hpp>

namespace rt = otpd::runtime;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t cap = 4096;  // small, so inputs fill it and wrap round
  if (size < 16) {
    return 0;
  }
  std::uint64_t head;
  std::uint64_t tail;
  std::memcpy(&head, data, 8);
  std::memcpy(&tail, data + 8, 8);
  data += 16;
  size -= 16;
  // Exactly 2 * cap bytes, the image twice: what the mapping shows.
  std::vector<char> image(2 * cap);
  std::size_t n = size < cap ? size : cap;
  std::memcpy(image.data(), data, n);
  std::memcpy(image.data() + cap, data, n);
  std::size_t free = 0;
  std::ignore = rt::ring::room(tail, head, cap, free);
  for (int rounds = 0; rounds < 1000; ++rounds) {
    auto r = rt::ring::next(image.data(), cap, head, tail);
    if (r.status != rt::ring::read::frame) {
      break;
    }
    head += r.size;
    if (r.f.h.flags != 0) {
      continue;
    }
    std::string body(r.f.body);
    if (rt::is_valid_term(body)) {
      rt::message m{static_cast<rt::kind>(r.f.h.kind), r.f.h.from,
                    rt::ref{r.f.h.ref_hi, r.f.h.ref_lo}, std::move(body)};
      std::ignore = m.reason();
      std::ignore = rt::decode_term(m.body);
    }
  }
  return 0;
}

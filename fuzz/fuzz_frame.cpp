// The mailbox's receive path on arbitrary stream bytes: frames cut as the
// mailbox cuts them from a receive block, each body made as the mailbox
// makes it (inline, or a view of the block), checked and decoded as a
// receiver would. The quick check of one-scalar bodies must agree with the
// parser's.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <tuple>

#include "detail.hpp"
#include "wire.hpp"

#include <otpd/runtime/message.hpp>
#include <otpd/runtime/term.hpp>

namespace rt = otpd::runtime;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rt::detail::block_ref rx(size);
  if (size > 0) {
    std::memcpy(rx.data(), data, size);
  }
  std::string_view buf(rx.data(), size);
  while (true) {
    auto f = rt::wire::next_frame(buf);
    if (f.status != rt::wire::cut::frame) {
      break;
    }
    buf.remove_prefix(sizeof f.h + f.body.size());
    if (!f.body.empty() && rt::is_valid_term(f.body) != rt::check_term(f.body).has_value()) {
      std::abort();  // the quick path and the parser disagree
    }
    if (!rt::is_valid_term(f.body)) {
      continue;
    }
    rt::message m{static_cast<rt::kind>(f.h.kind), f.h.from, rt::ref{f.h.ref_hi, f.h.ref_lo},
                  rt::detail::body_in(rx.get(), f.body)};
    if (m.body != f.body) {
      std::abort();
    }
    rt::message copy = m;  // shares a viewed block
    std::ignore = copy.reason();
    std::ignore = rt::decode_term(m.body);
  }
  return 0;
}

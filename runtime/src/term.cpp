// Bounded decoding of untrusted msgpack bodies (see term.hpp).
#include <cstdint>

#include "wire.hpp"

#include <otpd/runtime/term.hpp>

namespace otpd::runtime {
namespace {

// Nesting deeper than any legal message (a Redis reply nested 64 levels is
// ~130 msgpack levels); far below what would strain the parser's stack.
constexpr std::size_t max_depth = 256;
// Per container. The byte check in limits_visitor bounds the total anyway;
// these only stop one container from asking for a huge reservation.
constexpr std::size_t max_elements = std::size_t{1} << 24;

// Walks the bytes without building anything and stops at the first bound
// crossed. msgpack calls these by name (a template visitor), not virtually.
class limits_visitor : public msgpack::null_visitor {
 public:
  explicit limits_visitor(std::size_t bytes) : bytes_(bytes) {}

  bool visit_str(const char* /*v*/, std::uint32_t size) { return size <= decode_limits().str(); }
  bool visit_bin(const char* /*v*/, std::uint32_t size) { return size <= decode_limits().bin(); }
  bool visit_ext(const char* /*v*/, std::uint32_t size) { return size <= decode_limits().ext(); }
  bool start_array(std::uint32_t n) { return open(n, n, decode_limits().array()); }
  bool start_map(std::uint32_t n) { return open(n, std::uint64_t{n} * 2, decode_limits().map()); }
  bool end_array() { return close(); }
  bool end_map() { return close(); }

 private:
  // Every element takes at least one byte of the body, so the elements all
  // containers declare can never outnumber the bytes.
  bool open(std::uint32_t n, std::uint64_t elements, std::size_t limit) {
    declared_ += elements;
    return n <= limit && declared_ <= bytes_ && ++depth_ <= decode_limits().depth();
  }
  bool close() {
    --depth_;
    return true;
  }

  std::uint64_t bytes_;
  std::uint64_t declared_ = 0;
  std::size_t depth_ = 0;
};

}  // namespace

const msgpack::unpack_limit& decode_limits() noexcept {
  static const msgpack::unpack_limit limits(max_elements, max_elements, wire::max_body,
                                            wire::max_body, wire::max_body, max_depth);
  return limits;
}

core::Result<void> check_term(std::string_view bytes) noexcept {
  try {
    limits_visitor v(bytes.size());
    std::size_t off = 0;
    if (!bytes.empty() && msgpack::parse(bytes.data(), bytes.size(), off, v) &&
        off == bytes.size()) {
      return {};
    }
  } catch (...) {
  }
  return core::errc::malformed;
}

core::Result<msgpack::object_handle> decode_term(std::string_view bytes) noexcept {
  if (auto ok = check_term(bytes); !ok) {
    return ok.error();
  }
  try {
    return msgpack::unpack(bytes.data(), bytes.size(), nullptr, nullptr, decode_limits());
  } catch (...) {
    return core::errc::malformed;
  }
}

bool is_valid_term(std::string_view bytes) noexcept {
  return bytes.empty() || check_term(bytes).has_value();
}

}  // namespace otpd::runtime

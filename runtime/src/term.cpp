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

namespace detail {

namespace {
// The calling thread's zone, made on its first decode and destroyed when it
// exits.
msgpack::zone& thread_zone() {
  thread_local msgpack::zone z;
  return z;
}
thread_local bool t_zone_busy = false;
}  // namespace

decode_zone::decode_zone() {
  if (!t_zone_busy) {
    zone_ = &thread_zone();
    t_zone_busy = true;
    owned_ = false;
  } else {
    zone_ = new msgpack::zone;
    owned_ = true;
  }
}

decode_zone::~decode_zone() {
  if (owned_) {
    delete zone_;
    return;
  }
  zone_->clear();  // keeps its first chunk for the next message
  t_zone_busy = false;
}

core::Result<msgpack::object> decode_term(msgpack::zone& z, std::string_view bytes) noexcept {
  if (auto ok = check_term(bytes); !ok) {
    return ok.error();
  }
  try {
    return msgpack::unpack(z, bytes.data(), bytes.size(), nullptr, nullptr, decode_limits());
  } catch (...) {
    return core::errc::malformed;
  }
}

}  // namespace detail

namespace {

std::uint64_t big_endian(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

// The answer of check_term for a body that is one scalar (an integer, nil,
// a boolean, a float, a string or a binary), read off its first bytes
// without the parser; -1 for any other body (containers, ext, bytes no
// msgpack type starts with), which the parser checks. Most message bodies
// are one such term, and for them this is the whole decode.
int scalar_term_valid(std::string_view bytes) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  const unsigned char b = p[0];
  std::size_t total = 0;  // the length of the whole term
  std::uint64_t len = 0;  // of a string or binary
  bool is_str = false;
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
    total = 1;
  } else if (b >= 0xa0 && b <= 0xbf) {
    len = b & 0x1fU;
    total = 1 + len;
    is_str = true;
  } else if (b >= 0xca && b <= 0xd3) {
    // float32, float64, uint8..64, int8..64.
    static constexpr unsigned char sizes[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
    total = 1 + std::size_t{sizes[b - 0xca]};
  } else if ((b >= 0xd9 && b <= 0xdb) || (b >= 0xc4 && b <= 0xc6)) {
    is_str = b >= 0xd9;
    const int width = 1 << (is_str ? b - 0xd9 : b - 0xc4);  // 1, 2 or 4 length bytes
    if (n < 1 + static_cast<std::size_t>(width)) {
      return 0;  // the length itself is cut off
    }
    len = big_endian(p + 1, width);
    total = 1 + static_cast<std::size_t>(width) + len;
  } else {
    return -1;
  }
  if (len > (is_str ? decode_limits().str() : decode_limits().bin())) {
    return 0;
  }
  return total == n ? 1 : 0;
}

}  // namespace

bool is_valid_term(std::string_view bytes) noexcept {
  if (bytes.empty()) {
    return true;
  }
  if (int v = scalar_term_valid(bytes); v >= 0) {
    return v == 1;
  }
  return check_term(bytes).has_value();
}

}  // namespace otpd::runtime

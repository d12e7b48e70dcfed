#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <otpd/runtime/message.hpp>

namespace otpd::runtime::wire {

// A frame on a mailbox stream: a fixed 32-byte header, then the body.
// Integers are in the host's byte order: both ends are on one machine.
struct header {
  std::uint32_t body_len;
  std::uint8_t magic;
  std::uint8_t version;
  std::uint8_t kind;
  std::uint8_t flags;
  std::int32_t from;
  std::uint32_t reserved;
  std::uint64_t ref_hi;
  std::uint64_t ref_lo;
};
static_assert(sizeof(header) == 32);

inline constexpr std::uint8_t magic = 0xB7;
inline constexpr std::uint8_t version = 1;
// Bodies above this are refused by senders and treated as a broken stream by
// receivers (a length that large can only be garbage or abuse).
inline constexpr std::uint32_t max_body = 64u << 20;
inline constexpr std::uint8_t max_kind = static_cast<std::uint8_t>(kind::system);

inline header make_header(kind k, pid_t from, const ref& r, std::size_t body_len) {
  return header{static_cast<std::uint32_t>(body_len),
                magic,
                version,
                static_cast<std::uint8_t>(k),
                0,
                from,
                0,
                r.hi,
                r.lo};
}

// Writes the header make_header gives at p, field by field. A header built
// on the stack and copied is read back with wide loads that cannot take
// their bytes from the narrow stores that built it; such a load waits for
// the store buffer to drain, and on a shared ring that buffer holds the
// previous frame's stores to cache lines the receiver reads (2x the time
// of a 64-byte post).
inline void store_header(char* p, kind k, pid_t from, const ref& r, std::size_t body_len) {
  const auto len = static_cast<std::uint32_t>(body_len);
  const auto kind_byte = static_cast<std::uint8_t>(k);
  const std::uint8_t zero8 = 0;
  const std::uint32_t zero32 = 0;
  std::memcpy(p + offsetof(header, body_len), &len, sizeof len);
  std::memcpy(p + offsetof(header, magic), &magic, 1);
  std::memcpy(p + offsetof(header, version), &version, 1);
  std::memcpy(p + offsetof(header, kind), &kind_byte, 1);
  std::memcpy(p + offsetof(header, flags), &zero8, 1);
  std::memcpy(p + offsetof(header, from), &from, sizeof from);
  std::memcpy(p + offsetof(header, reserved), &zero32, sizeof zero32);
  std::memcpy(p + offsetof(header, ref_hi), &r.hi, sizeof r.hi);
  std::memcpy(p + offsetof(header, ref_lo), &r.lo, sizeof r.lo);
}

inline void append_frame(std::string& out, const header& h, std::string_view body) {
  out.append(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(body.data(), body.size());
}

// Why a header is unacceptable, or nullptr when it is fine.
inline const char* check_header(const header& h) {
  if (h.magic != magic) {
    return "bad magic (not an otpd peer)";
  }
  if (h.version != version) {
    return "unsupported frame version";
  }
  if (h.kind > max_kind) {
    return "unknown message kind";
  }
  if (h.body_len > max_body) {
    return "body length over 64 MiB";
  }
  return nullptr;
}

// The first whole frame of a received stream, cut without copying.
struct cut {
  enum status { frame, need_more, broken } status = need_more;
  header h{};
  std::string_view body;      // valid while the buffer is
  const char* why = nullptr;  // for broken: check_header's reason
};

// Cuts the first frame off buf (the received, unparsed bytes). need_more: the
// header or body is not all there yet; broken: the header is unacceptable and
// the stream cannot be resynchronised. A pure function: the mailbox and the
// frame fuzzer both use it.
inline cut next_frame(std::string_view buf) noexcept {
  cut c;
  if (buf.size() < sizeof(header)) {
    return c;
  }
  std::memcpy(&c.h, buf.data(), sizeof c.h);
  if (c.why = check_header(c.h); c.why != nullptr) {
    c.status = cut::broken;
    return c;
  }
  if (buf.size() - sizeof c.h < c.h.body_len) {
    return c;
  }
  c.status = cut::frame;
  c.body = buf.substr(sizeof c.h, c.h.body_len);
  return c;
}

}  // namespace otpd::runtime::wire

#pragma once

// Hashing a key: a wyhash-style fold keyed by the table's own random seed.
// Header-only: every lookup hashes its key, and the hash must inline into
// the lookup's fast path (there is no LTO).

#include <sys/random.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string_view>

#include <otpd/core/clock.hpp>

namespace otpd::shm_table::detail {

// A bijective 64-bit finaliser (murmur3's): seeds, not keys.
inline std::uint64_t mix64(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

inline std::uint64_t load8(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
inline std::uint64_t load4(const char* p) {
  std::uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// The high and low halves of a 64x64 product folded together with both
// operands (wyhash's protected form): one multiply mixes every bit of both
// into the result, and no operand value, zero included, makes it forget the
// other one.
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return a ^ b ^ static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// Every lookup hashes its key, so this is on the hot path: keys of up to 16
// bytes (the common case) are read with two possibly overlapping loads, no
// loop and no call, and folded with two multiplies (the scheme of wyhash).
// Its bits choose the stripe (low), the bucket (from bit 16) and the tag kept
// in the slot (high 32), so all 64 must be well mixed. secret is the table's
// own random seed (chosen at create, kept in its header): whoever picks the
// keys cannot know which of them collide, so they cannot pile entries into
// one stripe or one chain.
[[gnu::always_inline]] inline std::uint64_t hash_key(std::string_view k, std::uint64_t secret) {
  constexpr std::uint64_t k0 = 0xa0761d6478bd642fULL;
  constexpr std::uint64_t k1 = 0xe7037ed1a0b428dbULL;
  constexpr std::uint64_t k2 = 0x8ebc6af09c88c6e3ULL;
  const char* p = k.data();
  std::size_t n = k.size();
  std::uint64_t seed = secret ^ k0 ^ (n * k2);
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  if (n <= 16) {
    if (n >= 8) {
      a = load8(p);
      b = load8(p + n - 8);
    } else if (n >= 4) {
      a = load4(p);
      b = load4(p + n - 4);
    } else if (n > 0) {
      a = (static_cast<std::uint64_t>(static_cast<unsigned char>(p[0])) << 16) |
          (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n >> 1])) << 8) |
          static_cast<unsigned char>(p[n - 1]);
    }
  } else {
    const char* q = p;
    std::size_t left = n;
    while (left > 16) {
      seed = mix(load8(q) ^ k1, load8(q + 8) ^ seed);
      q += 16;
      left -= 16;
    }
    a = load8(p + n - 16);
    b = load8(p + n - 8);
  }
  return mix(k1 ^ n, mix(a ^ k1, b ^ seed));
}

// Key equality inline for short keys (two loads per side), memcmp beyond.
inline bool keys_equal(const char* a, const char* b, std::size_t n) {
  if (n >= 8 && n <= 16) {
    return ((load8(a) ^ load8(b)) | (load8(a + n - 8) ^ load8(b + n - 8))) == 0;
  }
  return std::memcmp(a, b, n) == 0;
}

// A fresh 64-bit secret for a table's hash: from the kernel's entropy pool,
// or, should getrandom fail, from the clock, the pid and a stack address.
inline std::uint64_t random_seed() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) == static_cast<ssize_t>(sizeof v)) {
    return v;
  }
  int here = 0;
  return mix64(static_cast<std::uint64_t>(core::monotonic_ns()) ^
               (static_cast<std::uint64_t>(::getpid()) << 32) ^
               reinterpret_cast<std::uintptr_t>(&here));
}

}  // namespace otpd::shm_table::detail

#pragma once

// The hash index of a set's stripe: bucket heads (slot indices) and chains
// through the stripe's dense link array. A slot's chain link and hash tag
// sit apart from its payload: a lookup walks its chain there (a few cache
// lines that stay cached) and touches only the one payload it wants, so it
// costs one trip to memory however long the chain. Header-only: find_set is
// the lookup's fast path.

#include <cstdint>
#include <string_view>

#include "journal.hpp"
#include "table_impl.hpp"

namespace otpd::shm_table::detail {

// The slot of stripe s holding key (hash h), or nil. Lock-free: every index
// is bounds-checked and the walk step-limited, so a racing writer can make it
// miss, never leave the stripe or loop.
[[nodiscard]] [[gnu::always_inline]] inline std::uint32_t find_set(const table::impl& t,
                                                                   std::uint32_t s, std::uint64_t h,
                                                                   std::string_view key) {
  auto h32 = static_cast<std::uint32_t>(h >> 32);
  const char* stripe_slots = t.slots + s * t.stripe_bytes;
  auto home = static_cast<std::uint32_t>(h >> 16) & t.bmask;
  const slot_link* lk = t.links + static_cast<std::size_t>(s) * t.spp;
  std::uint32_t idx = ld(t.buckets[s * t.bpp + home]);
  for (std::uint32_t steps = 0; idx < t.spp && steps <= t.spp; ++steps) {
    if (ld(lk[idx].hash) == h32) {
      const auto* sl = reinterpret_cast<const slot_hdr*>(
          stripe_slots + static_cast<std::size_t>(idx) * t.slot_size);
      if (ld(sl->klen) == key.size() &&
          keys_equal(reinterpret_cast<const char*>(sl) + t.payload_off, key.data(), key.size())) {
        return idx;
      }
    }
    idx = ld(lk[idx].next);
  }
  return nil;
}

// Links slot idx (its key hashes to h) at the head of its bucket's chain.
inline void hash_link(const table::impl& t, writer& w, std::uint32_t s, std::uint64_t h,
                      std::uint32_t idx) {
  std::uint32_t* b = t.bucket_of(s, h);
  st(t.link(s, idx).next, *b);
  w.save_field(*b);
  st(*b, idx);
}

// Unlinks slot idx from its bucket's chain.
inline void hash_unlink(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx) {
  std::uint32_t* b = t.bucket_of(s, t.hash(t.key_of(t.slot(s, idx))));
  slot_link& me = t.link(s, idx);
  if (*b == idx) {
    w.save_field(*b);
    st(*b, me.next);
  } else {
    std::uint32_t p = *b;
    for (std::uint32_t steps = 0; p < t.spp && steps <= t.spp; ++steps) {
      slot_link& pl = t.link(s, p);
      if (pl.next == idx) {
        w.save_field(pl.next);
        st(pl.next, me.next);
        break;
      }
      p = pl.next;
    }
  }
}

}  // namespace otpd::shm_table::detail

#pragma once

// A stripe's slot pool: fixed-size slots (header, key, value up to
// max_item_bytes) on a doubly linked free list (a free slot's link holds its
// next in `next` and its prev in `hash`). Taking a slot links its entry into
// the stripe's index; freeing unlinks it. A stripe whose pool is exhausted
// evicts within itself (LRU by a per-stripe logical clock that readers bump,
// or nearest expiry) or the write gives errc::table_full.
//
// Capacity: max_entries (and max_bytes) are checked against the sum of the
// stripes' counters, read under the writer's own stripe lock only:
// concurrent inserts into different stripes at the very limit may admit one
// entry each beyond it (bounded by the number of concurrent writers).
//
// Every function runs inside a writer (the stripe locked, each store
// journaled first). Header-only: they sit on the insert path. Every index
// and length they read from the segment is checked before it is used (any
// process of the node can write random bytes there): the ones returning
// bool answer false on one out of range, and the caller rolls back with
// errc::corrupt.

#include <cstdint>
#include <cstring>
#include <string_view>

#include "index.hpp"
#include "journal.hpp"
#include "table_impl.hpp"

namespace otpd::shm_table::detail {

// A free-list or chain index read from the segment: a slot, or nil.
[[nodiscard]] inline bool index_ok(const table::impl& t, std::uint32_t x) {
  return x == nil || x < t.spp;
}

// Unlinks slot idx (< spp) from the stripe's index and returns it to the pool.
[[nodiscard]] inline bool free_slot(const table::impl& t, writer& w, std::uint32_t s,
                                    std::uint32_t idx) {
  stripe_hdr& sh = t.stripe(s);
  slot_hdr* sl = t.slot(s, idx);
  if (t.type == table_type::ordered_set) {
    if (!skip_unlink(t, w, s, idx)) {
      return false;
    }
  } else {
    hash_unlink(t, w, s, idx);
  }
  // Push on the free list (doubly linked: a free slot's hash field is its prev).
  std::uint32_t old = ld(sh.free_head);
  if (!index_ok(t, old)) {
    return false;
  }
  slot_link& me = t.link(s, idx);
  w.save(sl, sizeof(slot_hdr));
  w.save(&me, sizeof me);
  w.save_field(sh.free_head);
  w.save_field(sh.count);
  w.save_field(sh.bytes);
  if (old != nil) {
    w.save_field(t.link(s, old).hash);
    st(t.link(s, old).hash, idx);
  }
  st(sh.bytes, sh.bytes - (static_cast<std::uint64_t>(sl->klen) + sl->vlen));
  st(sh.count, sh.count - 1);
  st(sl->live, 0);
  st(me.next, old);
  st(me.hash, nil);
  st(sh.free_head, idx);
  return true;
}

// The entry to evict from stripe s (never exclude), or nil.
inline std::uint32_t pick_victim(const table::impl& t, std::uint32_t s, std::int64_t now,
                                 std::uint32_t exclude) {
  std::uint32_t best = nil;
  std::uint64_t best_score = UINT64_MAX;
  for (std::uint32_t i = 0; i < t.spp; ++i) {
    slot_hdr* sl = t.slot(s, i);
    if (sl->live == 0 || i == exclude) {
      continue;
    }
    if (table::impl::expired(sl, now)) {
      return i;  // an expired entry is always the first to go
    }
    std::uint64_t score = UINT64_MAX;
    if (t.policy == eviction::lru) {
      score = ld(sl->atime);
    } else if (t.policy == eviction::nearest_expiry && sl->expire_ns != 0) {
      score = static_cast<std::uint64_t>(sl->expire_ns);
    } else {
      continue;
    }
    if (best == nil || score < best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

enum class room { ok, full, corrupt };

// Makes room for need_slot / extra bytes in stripe s, evicting by policy.
[[nodiscard]] inline room make_room(const table::impl& t, writer& w, std::uint32_t s,
                                    bool need_slot, std::uint64_t extra_bytes, std::int64_t now,
                                    std::uint32_t exclude) {
  stripe_hdr& sh = t.stripe(s);
  for (;;) {
    bool slot_ok = !need_slot || (sh.free_head != nil && t.total_count() < t.max_entries);
    bool bytes_ok = !t.bytes_bind || t.total_bytes() + extra_bytes <= t.max_bytes;
    if (slot_ok && bytes_ok) {
      return room::ok;
    }
    std::uint32_t v = nil;
    // Expired entries go first, whatever the policy.
    v = pick_victim(t, s, now, exclude);
    if (v == nil) {
      return room::full;
    }
    if (t.policy == eviction::none && !table::impl::expired(t.slot(s, v), now)) {
      return room::full;
    }
    // Each eviction commits on its own: one insert may evict many small
    // entries, more than one journal holds. An eviction is a complete change,
    // so a crash after it leaves a consistent table (without the victim).
    if (!free_slot(t, w, s, v)) {
      return room::corrupt;
    }
    w.commit();
  }
}

// Takes a slot from the pool and links a new entry. Caller made room.
[[nodiscard]] inline bool link_new(const table::impl& t, writer& w, std::uint32_t s,
                                   std::uint64_t h, std::string_view key, std::string_view value,
                                   std::int64_t expire) {
  stripe_hdr& sh = t.stripe(s);
  bool ordered = t.type == table_type::ordered_set;
  // Slots are taken in free-list order, so entries inserted together sit
  // together: a reader walking them in that order stays on a few pages.
  std::uint32_t idx = ld(sh.free_head);
  if (idx >= t.spp) {
    return false;
  }
  slot_hdr* sl = t.slot(s, idx);
  slot_link& me = t.link(s, idx);
  std::uint32_t prev = ld(me.hash);
  std::uint32_t next = ld(me.next);
  if (!index_ok(t, prev) || !index_ok(t, next)) {
    return false;
  }
  w.save(sl, t.payload_off);  // header (+ forward pointers)
  w.save(&me, sizeof me);
  if (prev == nil) {
    w.save_field(sh.free_head);
    st(sh.free_head, next);
  } else {
    w.save_field(t.link(s, prev).next);
    st(t.link(s, prev).next, next);
  }
  if (next != nil) {
    w.save_field(t.link(s, next).hash);
    st(t.link(s, next).hash, prev);
  }
  std::memcpy(t.key_ptr(sl), key.data(), key.size());
  std::memcpy(t.key_ptr(sl) + key.size(), value.data(), value.size());
  st(me.hash, static_cast<std::uint32_t>(h >> 32));
  st(sl->klen, key.size());
  st(sl->vlen, value.size());
  st(sl->expire_ns, expire);
  st(sl->live, 1);
  if (t.policy == eviction::lru) {
    st(sl->atime, __atomic_add_fetch(&sh.lru_clock, 1, __ATOMIC_RELAXED));
  }
  if (ordered) {
    if (!skip_link(t, w, s, idx, key)) {
      return false;
    }
  } else {
    hash_link(t, w, s, h, idx);
  }
  w.save_field(sh.count);
  w.save_field(sh.bytes);
  st(sh.count, sh.count + 1);
  st(sh.bytes, sh.bytes + key.size() + value.size());
  return true;
}

// Replaces the value of slot idx in place (readers retry meanwhile).
[[nodiscard]] inline bool overwrite(const table::impl& t, writer& w, std::uint32_t s,
                                    std::uint32_t idx, std::string_view value,
                                    std::int64_t expire) {
  stripe_hdr& sh = t.stripe(s);
  slot_hdr* sl = t.slot(s, idx);
  // Read once: the value must end inside the slot, whatever klen says later.
  std::uint32_t k = ld(sl->klen);
  if (static_cast<std::uint64_t>(k) + value.size() > t.max_item) {
    return false;
  }
  char* v = t.key_ptr(sl) + k;
  w.save(sl, sizeof(slot_hdr));
  w.save(v, value.size());
  w.save_field(sh.bytes);
  st(sh.bytes, sh.bytes - sl->vlen + value.size());
  std::memcpy(v, value.data(), value.size());
  st(sl->vlen, value.size());
  st(sl->expire_ns, expire);
  if (t.policy == eviction::lru) {
    st(sl->atime, __atomic_add_fetch(&sh.lru_clock, 1, __ATOMIC_RELAXED));
  }
  return true;
}

}  // namespace otpd::shm_table::detail

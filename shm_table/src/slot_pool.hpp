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
// journaled first). Header-only: they sit on the insert path.

#include <cstdint>
#include <cstring>
#include <string_view>

#include "index.hpp"
#include "journal.hpp"
#include "table_impl.hpp"

namespace otpd::shm_table::detail {

// Unlinks slot idx from the stripe's index and returns it to the pool.
inline void free_slot(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx) {
  stripe_hdr& sh = t.stripe(s);
  slot_hdr* sl = t.slot(s, idx);
  if (t.type == table_type::ordered_set) {
    skip_unlink(t, w, s, idx);
  } else {
    hash_unlink(t, w, s, idx);
  }
  // Push on the free list (doubly linked: a free slot's hash field is its prev).
  std::uint32_t old = sh.free_head;
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

// Makes room for need_slot / extra bytes in stripe s, evicting by policy.
inline bool make_room(const table::impl& t, writer& w, std::uint32_t s, bool need_slot,
                      std::uint64_t extra_bytes, std::int64_t now, std::uint32_t exclude) {
  stripe_hdr& sh = t.stripe(s);
  for (;;) {
    bool slot_ok = !need_slot || (sh.free_head != nil && t.total_count() < t.max_entries);
    bool bytes_ok = !t.bytes_bind || t.total_bytes() + extra_bytes <= t.max_bytes;
    if (slot_ok && bytes_ok) {
      return true;
    }
    std::uint32_t v = nil;
    // Expired entries go first, whatever the policy.
    v = pick_victim(t, s, now, exclude);
    if (v == nil) {
      return false;
    }
    if (t.policy == eviction::none && !table::impl::expired(t.slot(s, v), now)) {
      return false;
    }
    // Each eviction commits on its own: one insert may evict many small
    // entries, more than one journal holds. An eviction is a complete change,
    // so a crash after it leaves a consistent table (without the victim).
    free_slot(t, w, s, v);
    w.commit();
  }
}

// Takes a slot from the pool and links a new entry. Caller made room.
inline void link_new(const table::impl& t, writer& w, std::uint32_t s, std::uint64_t h,
                     std::string_view key, std::string_view value, std::int64_t expire) {
  stripe_hdr& sh = t.stripe(s);
  bool ordered = t.type == table_type::ordered_set;
  // Slots are taken in free-list order, so entries inserted together sit
  // together: a reader walking them in that order stays on a few pages.
  std::uint32_t idx = sh.free_head;
  slot_hdr* sl = t.slot(s, idx);
  slot_link& me = t.link(s, idx);
  w.save(sl, t.payload_off);  // header (+ forward pointers)
  w.save(&me, sizeof me);
  std::uint32_t prev = me.hash;
  std::uint32_t next = me.next;
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
    skip_link(t, w, s, idx, key);
  } else {
    hash_link(t, w, s, h, idx);
  }
  w.save_field(sh.count);
  w.save_field(sh.bytes);
  st(sh.count, sh.count + 1);
  st(sh.bytes, sh.bytes + key.size() + value.size());
}

// Replaces the value of slot idx in place (readers retry meanwhile).
inline void overwrite(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx,
                      std::string_view value, std::int64_t expire) {
  stripe_hdr& sh = t.stripe(s);
  slot_hdr* sl = t.slot(s, idx);
  char* v = t.key_ptr(sl) + sl->klen;
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
}

}  // namespace otpd::shm_table::detail

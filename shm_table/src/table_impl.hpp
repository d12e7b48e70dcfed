#pragma once

// table::impl: one process's view of a mapped table segment (the layout's
// arrays bound to pointers), the accessors every unit walks the segment
// with, and the stripe's locking: the robust lock with its undo-journal
// repair, and the lock-free read loop. Header-only where the lookup's fast
// path needs it inlined.
//
// A set is split into 2^k stripes by the key's hash; each stripe is a small
// self-contained table: its robust mutex, its seqlock counter, its own slot
// pool (slot_pool.hpp), its hash buckets (hash_index.hpp), its counters and
// its undo journal (journal.hpp). An ordered_set has one stripe whose slots
// form a skip list (ordered_index.hpp). Because a write touches exactly one
// stripe, it needs exactly one lock and one journal: there is no cross-lock
// state a crash could leave half-updated, and writes to keys of different
// stripes run in parallel.
//
// Crash repair. If a writer is SIGKILLed while holding the stripe's mutex,
// the next locker gets EOWNERDEAD (robust_lock.hpp), applies the undo records
// in reverse (rolling the half-done write back to the last committed state),
// clears the journal, makes the counter even, and only then calls
// pthread_mutex_consistent. Replaying the undo records is idempotent. A write
// that returned success had committed before the unlock, so no repair ever
// undoes it.
//
// Readers take no lock: read the stripe's counter; if odd, a write is in
// flight; walk, copy out, and read the counter again: any change means a
// write overlapped, so retry. Every index and length read during the walk is
// bounds-checked and every walk is step-limited, so a reader racing a writer
// may read stale bytes but never leaves the segment or loops, and it never
// returns them. A reader that keeps seeing an odd counter tries the mutex
// (trylock, never blocking): an EOWNERDEAD there means the writer is dead,
// and the reader repairs the stripe itself, so readers never wait on a dead
// process. Nor forever on a live one: past wait_ms (a writer stopped by
// SIGSTOP, a counter left odd by random bytes) the read answers errc::busy
// or errc::corrupt.

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "hash.hpp"
#include "layout.hpp"
#include "robust_lock.hpp"
#include "segment.hpp"
#include <fmt/format.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/result.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

struct table::impl {
  std::unique_ptr<detail::segment> seg;
  const std::atomic<bool>* damage = nullptr;  // seg's damage flag (bind)
  char* base = nullptr;
  detail::seg_header* hdr = nullptr;
  std::string node;
  std::string name;
  table_type type = table_type::set;
  access_mode access = access_mode::protected_table;
  eviction policy = eviction::none;
  std::uint32_t stripes = 1;
  std::uint32_t smask = 0;
  std::uint32_t spp = 0;  // slots per stripe
  std::uint32_t bpp = 0;  // buckets per stripe
  std::uint32_t bmask = 0;
  std::uint32_t slot_size = 0;
  std::uint64_t stripe_bytes = 0;  // spp * slot_size
  std::uint32_t payload_off = 0;
  std::uint32_t max_item = 0;
  std::uint64_t hash_seed = 0;
  std::uint32_t max_entries = 0;
  std::uint64_t max_bytes = 0;
  bool bytes_bind = false;
  std::uint32_t journal_bytes = 0;
  std::uint64_t seg_size = 0;
  detail::stripe_hdr* stripe_p = nullptr;
  std::uint32_t* buckets = nullptr;
  detail::slot_link* links = nullptr;
  char* slots = nullptr;
  char* journals = nullptr;
  mutable std::uint64_t repairs = 0;
  mutable bool journal_damage_logged = false;

  // How long a write waits for its stripe's lock, and a read for a write in
  // flight to end, before errc::busy (table::set_wait).
  int wait_ms = 2000;

  // Checks the segment's header and points the view at the segment's
  // arrays, as the header places them. The header is copied first and only
  // the copy is used, here and after: another process rewriting the header
  // later changes nothing we rely on. errc::corrupt (with what is wrong)
  // unless the header is exactly one that create() writes for a segment of
  // this size.
  [[nodiscard]] core::Result<void> bind();

  [[nodiscard]] std::uint64_t hash(std::string_view key) const {
    return detail::hash_key(key, hash_seed);
  }
  [[nodiscard]] detail::stripe_hdr& stripe(std::uint32_t s) const { return stripe_p[s]; }
  [[nodiscard]] std::uint32_t* bucket_of(std::uint32_t s, std::uint64_t h) const {
    return buckets + static_cast<std::uint64_t>(s) * bpp + ((h >> 16) & bmask);
  }
  [[nodiscard]] detail::slot_hdr* slot(std::uint32_t s, std::uint32_t idx) const {
    return reinterpret_cast<detail::slot_hdr*>(slots + (static_cast<std::uint64_t>(s) * spp + idx) *
                                                           slot_size);
  }
  [[nodiscard]] detail::slot_link& link(std::uint32_t s, std::uint32_t idx) const {
    return links[static_cast<std::uint64_t>(s) * spp + idx];
  }
  // A skip list node's forward pointers (the head's live in the stripe header).
  [[nodiscard]] std::uint32_t* fwd(std::uint32_t s, std::uint32_t idx) const {
    if (idx == detail::head_node) {
      return stripe(s).head_fwd;
    }
    return reinterpret_cast<std::uint32_t*>(reinterpret_cast<char*>(slot(s, idx)) +
                                            sizeof(detail::slot_hdr));
  }
  [[nodiscard]] char* key_ptr(detail::slot_hdr* sl) const {
    return reinterpret_cast<char*>(sl) + payload_off;
  }
  [[nodiscard]] detail::journal_hdr* journal(std::uint32_t s) const {
    return reinterpret_cast<detail::journal_hdr*>(journals +
                                                  static_cast<std::uint64_t>(s) * journal_bytes);
  }
  [[nodiscard]] std::uint32_t stripe_of(std::uint64_t h) const {
    return type == table_type::ordered_set ? 0 : static_cast<std::uint32_t>(h & smask);
  }
  // Key and value of a slot, lengths clamped so that a racing reader never
  // leaves the slot.
  [[nodiscard]] std::string_view key_of(detail::slot_hdr* sl) const {
    std::uint32_t k = std::min<std::uint32_t>(detail::ld(sl->klen), max_item);
    return {key_ptr(sl), k};
  }
  [[nodiscard]] std::string_view value_of(detail::slot_hdr* sl) const {
    std::uint32_t k = std::min<std::uint32_t>(detail::ld(sl->klen), max_item);
    std::uint32_t v = std::min<std::uint32_t>(detail::ld(sl->vlen), max_item - k);
    return {key_ptr(sl) + k, v};
  }

  // Someone shrank the segment under us (segment.hpp): answer corrupt.
  [[nodiscard]] bool damaged() const noexcept { return damage->load(std::memory_order_acquire); }

  [[nodiscard]] bool writable() const {
    return access == access_mode::public_table || detail::ld(hdr->owner_pid) == ::getpid();
  }
  [[nodiscard]] std::uint64_t total_count() const {
    std::uint64_t n = 0;
    for (std::uint32_t s = 0; s < stripes; ++s) {
      n += detail::ld(stripe(s).count);
    }
    return n;
  }
  [[nodiscard]] std::uint64_t total_bytes() const {
    std::uint64_t n = 0;
    for (std::uint32_t s = 0; s < stripes; ++s) {
      n += detail::ld(stripe(s).bytes);
    }
    return n;
  }

  [[nodiscard]] static bool expired(const detail::slot_hdr* sl, std::int64_t now) {
    std::int64_t e = detail::ld(sl->expire_ns);
    return e != 0 && e <= now;
  }

  void touch(std::uint32_t s, detail::slot_hdr* sl) const {
    if (policy == eviction::lru) {
      std::uint64_t t = __atomic_add_fetch(&stripe(s).lru_clock, 1, __ATOMIC_RELAXED);
      detail::st(sl->atime, t);
    }
  }

  [[nodiscard]] entry copy_entry(detail::slot_hdr* sl, std::int64_t now) const {
    entry e{std::string(key_of(sl)), std::string(value_of(sl)), std::nullopt};
    std::int64_t x = detail::ld(sl->expire_ns);
    if (x != 0) {
      e.ttl_left_ms = std::max<std::int64_t>(0, (x - now) / 1'000'000);
    }
    return e;
  }

  // --- the stripe's lock ---------------------------------------------------

  // Rolls the stripe back to its last committed state (journal.cpp). Caller
  // holds the lock. False when the journal itself is damaged (a record
  // outside what a writer of this stripe saves): the stripe is corrupt.
  [[nodiscard]] bool undo(std::uint32_t s) const;

  // Caller holds the stripe's lock; a previous holder died (or left a mark).
  [[nodiscard]] bool repair(std::uint32_t s) const {
    if (!undo(s)) {
      // Once per table object: readers meet it on every retry.
      if (!journal_damage_logged) {
        journal_damage_logged = true;
        core::log_error("shm_table {}: stripe {} has a damaged undo journal; not repaired", name,
                        s);
      }
      return false;
    }
    detail::seq_repair(stripe(s).seq);
    ++repairs;
    __atomic_add_fetch(&hdr->repairs, 1, __ATOMIC_RELAXED);
    core::log_warn("shm_table {}: repaired stripe {} after a writer died in it", name, s);
    return true;
  }

  // The table's repair policy for robust_lock: replay the undo journal.
  struct stripe_repair {
    const impl& t;
    std::uint32_t s;
    [[nodiscard]] bool repair() const { return t.repair(s); }
    [[nodiscard]] bool dirty() const {
      return detail::ld(t.journal(s)->n) != 0 || (detail::ld(t.stripe(s).seq) & 1) != 0;
    }
  };

  [[nodiscard]] static core::errc lock_errc(int rc) {
    return rc == detail::lock_busy ? core::errc::busy : core::errc::corrupt;
  }

  // Locks stripe s, repairing it when its previous holder died: errc::busy
  // when a live process held it for all of wait_ms, errc::corrupt when the
  // lock or the journal is damaged.
  [[nodiscard]] core::Result<void> lock(std::uint32_t s) const {
    if (damaged()) {
      return core::errc::corrupt;
    }
    int rc = detail::robust_lock(stripe(s).mutex, stripe_repair{*this, s}, wait_ms);
    if (rc != 0) {
      core::errc e = lock_errc(rc);
      return {e, fmt::format("shm_table {}: stripe {}: {}", name, s,
                             e == core::errc::busy
                                 ? fmt::format("lock held by a live process for {} ms", wait_ms)
                                 : std::string("lock or undo journal damaged"))};
    }
    return {};
  }
  void unlock(std::uint32_t s) const { ::pthread_mutex_unlock(&stripe(s).mutex); }

  // A reader seeing a write in flight: spin a little, then yield, checking
  // now and then whether the writer died (and repairing the stripe if so).
  // Past wait_ms: errc::busy while a live process holds the lock (a writer
  // stopped by SIGSTOP, or very slow), errc::corrupt when the lock is
  // damaged or the stripe cannot be repaired (a damaged undo journal).
  [[nodiscard]] core::errc settle(std::uint32_t s, std::uint32_t attempt,
                                  std::int64_t& until) const {
    if (attempt < 64) {
      detail::cpu_relax();
      return core::errc::ok;
    }
    // The clock is read at every yield (a yield may give the CPU away for a
    // whole time slice on a loaded machine), the lock tried every 16th.
    int rc = 0;
    if (attempt % 16 == 0) {
      rc = detail::robust_try_repair(stripe(s).mutex, stripe_repair{*this, s});
      if (rc == detail::lock_corrupt) {
        return core::errc::corrupt;
      }
    }
    std::int64_t now = core::monotonic_ns();
    if (until == 0) {
      until = now + static_cast<std::int64_t>(wait_ms) * 1'000'000;
    } else if (now >= until) {
      if (attempt % 16 != 0) {
        rc = detail::robust_try_repair(stripe(s).mutex, stripe_repair{*this, s});
      }
      // Held by a live writer, or free and repaired only now (writers keep
      // coming): busy. A lock nobody can release: corrupt.
      return rc == detail::lock_corrupt ? core::errc::corrupt : core::errc::busy;
    }
    ::sched_yield();
    return core::errc::ok;
  }

  // Runs fn as a lock-free read of stripe s until it saw a stable stripe.
  // Scans (lock_after > 0) fall back to the lock after that many torn
  // attempts, so a busy writer cannot starve a long scan. Bounded by
  // wait_ms: errc::busy or errc::corrupt as settle() says (fn's output is
  // then to be thrown away), errc::corrupt too when the segment was shrunk.
  template <class Fn>
  [[nodiscard]] core::errc read_stripe(std::uint32_t s, Fn&& fn,
                                       std::uint32_t lock_after = 0) const {
    if (damaged()) {
      return core::errc::corrupt;
    }
    detail::stripe_hdr& sh = stripe(s);
    std::uint32_t torn = 0;
    std::int64_t until = 0;
    for (std::uint32_t attempt = 0;; ++attempt) {
      std::uint64_t q1 = detail::seq_read_begin(sh.seq);
      if ((q1 & 1) != 0) {
        if (core::errc e = settle(s, attempt, until); e != core::errc::ok) {
          return e;
        }
        continue;
      }
      fn();
      if (detail::seq_read_valid(sh.seq, q1)) {
        return damaged() ? core::errc::corrupt : core::errc::ok;
      }
      if (lock_after != 0 && ++torn >= lock_after) {
        auto l = lock(s);
        if (!l) {
          return static_cast<core::errc>(l.error().value());
        }
        fn();
        unlock(s);
        return damaged() ? core::errc::corrupt : core::errc::ok;
      }
      // Writes overlapping every attempt: give up at the same bound.
      if (attempt >= 64) {
        std::int64_t now = core::monotonic_ns();
        if (until == 0) {
          until = now + static_cast<std::int64_t>(wait_ms) * 1'000'000;
        } else if (now >= until) {
          return core::errc::busy;
        }
      }
    }
  }

  // The general lookup (any table type), in table.cpp.
  [[nodiscard]] core::Result<bool> lookup_slow(std::uint64_t h, std::string_view key,
                                               std::string& out) const;
};

}  // namespace otpd::shm_table

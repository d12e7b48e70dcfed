// shm_table: an ETS-like table in POSIX shared memory that survives the death
// of any process using it, at any instruction.
//
// One segment per table, "/dev/shm/otpd.<node>.<name>", mode 0600, fixed
// size, mapped by segment.hpp (shm_open, fstat, mmap). A set is split into
// 2^k stripes by the key's hash, each a small self-contained table with its
// own lock, seqlock, slot pool, index, counters and undo journal, so a write
// touches one stripe, takes one lock and fills one journal. Where each part
// lives:
//
//   layout.hpp          what lives where in the segment (structs, offsets,
//                       the layout version), pinned by static_asserts
//   hash.hpp            the key hash (wyhash-style, per-table random seed)
//   robust_lock.hpp     the robust mutex with its EOWNERDEAD repair hook and
//                       the seqlock (shared with persistent_term.cpp)
//   table_impl.hpp      table::impl: the mapped view, the stripe's lock with
//                       its undo-journal repair, the lock-free read loop
//   journal.hpp/.cpp    the undo journal and the write transaction (writer)
//   hash_index.hpp      a set's buckets and chains
//   ordered_index.*     an ordered_set's skip list and its ordered walks
//   index.hpp           find() over either index
//   slot_pool.hpp       free lists, linking entries, eviction, capacity
//   table_open.cpp      create, open, adopt; option names
//   table_write.cpp     insert, take, update_counter, deletes, sweep
//   table.cpp           this file: reads
//   verify.cpp          verify(): every invariant of every stripe
//   registry.cpp        the node's tables: names, listing, stale removal
//
// Readers take no lock (ETS read_concurrency and more): they read a stripe
// inside its seqlock and retry when a write overlapped (table_impl.hpp's
// read_stripe, and the fast path below). The common lookup (a set, no TTL on
// the entry, no LRU) is one inlined pass with no call but the value's copy:
// short enough that the CPU overlaps the next lookup's memory accesses with
// this one's, which is where a table far larger than the caches gets its
// speed. It stays one inlined pass across the units because everything it
// calls (hash_key and find_set, both always_inline, and the seqlock) is
// header-only: there is no LTO.
//
// Hostile bytes. Other users cannot reach a segment: it is created with
// O_EXCL and mode 0600, and opened only when owned by our euid with no group
// or other permission (segment.hpp). Any process of the node's own user can
// still write anything into it, so nothing read from it is trusted:
//   - open checks the header against the layout create() would plan for its
//     options, every size and offset (table_open.cpp), and keeps a copy;
//   - every index and length read from the segment is bounds-checked before
//     use, by readers (which clamp, and retry within a step bound) and by
//     writers (which roll back and answer errc::corrupt);
//   - the undo journal is copied and every record checked to lie inside
//     what a writer of its stripe saves before any is applied (journal.cpp);
//   - locks are taken with a deadline and a lock word of garbage is
//     errc::corrupt, a live holder past the deadline errc::busy
//     (robust_lock.hpp); readers behind a write in flight wait as long, then
//     answer the same (table_impl.hpp's read_stripe, lookup_checked);
//   - a shrink (ftruncate by the same user cannot be refused) is survived
//     through a SIGBUS handler that maps zero pages over the lost part of
//     the mapping and marks the segment damaged: every operation checks the
//     mark and answers errc::corrupt (segment.hpp says why this and not
//     sigsetjmp around accesses: no C++ frame is ever skipped, and the fast
//     path pays one load of the mark).
// verify() reports what is left: any broken invariant is errc::corrupt.
//
// TTL. An entry stores its expiry in CLOCK_MONOTONIC nanoseconds (the same
// clock in every process): an expired entry is invisible at once to every
// read, and is reclaimed by sweep() (or overwritten by an insert of its key).

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "index.hpp"
#include "layout.hpp"
#include "robust_lock.hpp"
#include "table_impl.hpp"

#include <otpd/core/clock.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

using core::errc;
using namespace detail;

// The general read: any table type, retried until it saw a stable stripe
// (errc::busy / errc::corrupt past the wait bound, as read_stripe says).
Result<bool> table::impl::lookup_slow(std::uint64_t h, std::string_view key,
                                      std::string& out) const {
  std::uint32_t s = stripe_of(h);
  bool found = false;
  slot_hdr* hit = nullptr;
  std::int64_t now = 0;
  errc e = read_stripe(s, [&] {
    found = false;
    std::uint32_t idx = find(*this, s, h, key);
    if (idx == nil) {
      return;
    }
    slot_hdr* sl = slot(s, idx);
    if (ld(sl->expire_ns) != 0) {
      if (now == 0) {
        now = core::monotonic_ns();
      }
      if (impl::expired(sl, now)) {
        return;
      }
    }
    std::string_view v = value_of(sl);
    out.assign(v.data(), v.size());
    found = true;
    hit = sl;
  });
  if (e != errc::ok) {
    return e;
  }
  if (found) {
    touch(s, hit);
  }
  return found;
}

namespace {

enum class fast { miss, hit, slow };

// The hot path: a set, one optimistic pass with no call besides the value's
// copy, and few enough instructions that the CPU runs the next lookup's
// loads while this one's slot is still on its way from memory. Anything
// unusual (a write in flight, an overlapped write, a TTL, LRU bookkeeping,
// an ordered_set, a damaged segment) takes the general path above.
[[gnu::always_inline]] inline fast lookup_fast(const table::impl& t, std::uint64_t h,
                                               std::string_view key, std::string& out) {
  if (t.type != table_type::set || t.policy == eviction::lru) [[unlikely]] {
    return fast::slow;
  }
  auto s = static_cast<std::uint32_t>(h & t.smask);
  const stripe_hdr& sh = t.stripe(s);
  std::uint64_t q1 = seq_read_begin(sh.seq);
  std::uint32_t idx = find_set(t, s, h, key);
  if (idx == nil) {
    if ((q1 & 1) == 0 && seq_read_valid(sh.seq, q1) && !t.damaged()) {
      return fast::miss;
    }
    return fast::slow;
  }
  const slot_hdr* sl = t.slot(s, idx);
  if (ld(sl->expire_ns) != 0) {
    return fast::slow;
  }
  // Lengths clamped to the slot: a torn read copies garbage, never past it.
  std::uint32_t v =
      std::min<std::uint32_t>(ld(sl->vlen), t.max_item - static_cast<std::uint32_t>(key.size()));
  out.resize(v);
  std::memcpy(out.data(), reinterpret_cast<const char*>(sl) + t.payload_off + key.size(), v);
  if ((q1 & 1) != 0 || !seq_read_valid(sh.seq, q1) || t.damaged()) [[unlikely]] {
    return fast::slow;
  }
  return fast::hit;
}

}  // namespace

bool table::lookup_into(std::string_view key, std::string& out) const {
  const impl& t = *impl_;
  if (key.empty() || key.size() > t.max_item) {
    return false;
  }
  std::uint64_t h = t.hash(key);
  fast f = lookup_fast(t, h, key, out);
  if (f != fast::slow) [[likely]] {
    return f == fast::hit;
  }
  auto r = t.lookup_slow(h, key, out);
  return r && *r;
}

Result<bool> table::lookup_checked(std::string_view key, std::string& out) const {
  const impl& t = *impl_;
  if (key.empty() || key.size() > t.max_item) {
    return t.damaged() ? Result<bool>(errc::corrupt) : Result<bool>(false);
  }
  std::uint64_t h = t.hash(key);
  fast f = lookup_fast(t, h, key, out);
  if (f != fast::slow) {
    return f == fast::hit;
  }
  return t.lookup_slow(h, key, out);
}

void table::set_wait(std::chrono::milliseconds wait) noexcept {
  impl_->wait_ms = static_cast<int>(std::clamp<std::int64_t>(wait.count(), 1, 3'600'000));
}

// Stages of a batch: every key's bucket is requested, then every chain's
// link, then every candidate slot, each stage while the previous one's loads
// are still arriving; the final pass is lookup_into over cached lines. The
// stages only prefetch (indices bounds-checked, nothing trusted), so a write
// racing them costs a miss, never a wrong answer.
Result<std::size_t> table::lookup_many(std::span<const std::string_view> keys,
                                       std::span<std::string> out, std::span<bool> found) const {
  if (out.size() < keys.size() || found.size() < keys.size()) {
    return errc::invalid_argument;
  }
  const impl& t = *impl_;
  std::size_t hits = 0;
  constexpr std::size_t batch = 16;
  bool staged = t.type == table_type::set && t.policy != eviction::lru;
  for (std::size_t base = 0; base < keys.size(); base += batch) {
    std::size_t n = std::min(batch, keys.size() - base);
    if (staged) {
      std::uint64_t h[batch];
      std::uint32_t idx[batch];
      for (std::size_t i = 0; i < n; ++i) {
        h[i] = t.hash(keys[base + i]);
        auto s = static_cast<std::uint32_t>(h[i] & t.smask);
        __builtin_prefetch(t.bucket_of(s, h[i]));
      }
      for (std::size_t i = 0; i < n; ++i) {
        auto s = static_cast<std::uint32_t>(h[i] & t.smask);
        idx[i] = ld(*t.bucket_of(s, h[i]));
        if (idx[i] < t.spp) {
          __builtin_prefetch(&t.link(s, idx[i]));
        }
      }
      for (std::size_t i = 0; i < n; ++i) {
        auto s = static_cast<std::uint32_t>(h[i] & t.smask);
        auto h32 = static_cast<std::uint32_t>(h[i] >> 32);
        std::uint32_t x = idx[i];
        for (std::uint32_t steps = 0; x < t.spp && steps < 8; ++steps) {
          const slot_link& l = t.link(s, x);
          if (ld(l.hash) == h32) {
            // The header, the key and the start of the value: a big slot's
            // tail is not worth evicting other lines for.
            const char* p = reinterpret_cast<const char*>(t.slot(s, x));
            for (std::uint32_t off = 0; off < std::min<std::uint32_t>(t.slot_size, 256);
                 off += 64) {
              __builtin_prefetch(p + off);
            }
            break;
          }
          x = ld(l.next);
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      bool f = lookup_into(keys[base + i], out[base + i]);
      found[base + i] = f;
      hits += f ? 1 : 0;
    }
  }
  return hits;
}

std::optional<std::string> table::lookup(std::string_view key) const {
  std::string out;
  if (!lookup_into(key, out)) {
    return std::nullopt;
  }
  return out;
}

bool table::member(std::string_view key) const {
  const impl& t = *impl_;
  if (key.empty() || key.size() > t.max_item) {
    return false;
  }
  std::uint64_t h = t.hash(key);
  std::uint32_t s = t.stripe_of(h);
  bool found = false;
  errc e = t.read_stripe(s, [&] {
    std::uint32_t idx = find(t, s, h, key);
    found = idx != nil && !impl::expired(t.slot(s, idx), core::monotonic_ns());
  });
  return e == errc::ok && found;
}
namespace {

// A consistent copy of the live entries of stripe s (in table order); empty
// when the stripe stayed busy past the wait bound or is damaged.
std::vector<entry> snapshot(const table::impl& t, std::uint32_t s) {
  std::vector<entry> out;
  errc e = t.read_stripe(
      s,
      [&] {
        out.clear();
        std::int64_t now = core::monotonic_ns();
        if (t.type == table_type::ordered_set) {
          std::uint32_t x = ld(t.stripe(s).head_fwd[0]);
          for (std::uint32_t steps = 0; x < t.spp && steps <= t.spp; ++steps) {
            slot_hdr* sl = t.slot(s, x);
            if (!table::impl::expired(sl, now)) {
              out.push_back(t.copy_entry(sl, now));
            }
            x = ld(t.fwd(s, x)[0]);
          }
        } else {
          for (std::uint32_t i = 0; i < t.spp; ++i) {
            slot_hdr* sl = t.slot(s, i);
            if (ld(sl->live) != 0 && !table::impl::expired(sl, now)) {
              out.push_back(t.copy_entry(sl, now));
            }
          }
        }
      },
      4);
  if (e != errc::ok) {
    out.clear();
  }
  return out;
}

}  // namespace

std::vector<entry> table::select(const predicate& pred) const {
  std::vector<entry> out;
  for (std::uint32_t s = 0; s < impl_->stripes; ++s) {
    for (auto& e : snapshot(*impl_, s)) {
      if (pred(e.key, e.value)) {
        out.push_back(std::move(e));
      }
    }
  }
  return out;
}

void table::fold(const std::function<void(const entry&)>& fn) const {
  for (std::uint32_t s = 0; s < impl_->stripes; ++s) {
    for (const auto& e : snapshot(*impl_, s)) {
      fn(e);
    }
  }
}

Result<std::optional<std::string>> table::first() const {
  auto r = range("", "", 1);
  if (!r) {
    return r.error();
  }
  if (r->empty()) {
    return std::optional<std::string>{};
  }
  return std::optional<std::string>(std::move(r->front().key));
}

Result<std::optional<std::string>> table::last() const {
  if (impl_->type != table_type::ordered_set) {
    return errc::invalid_argument;
  }
  return ordered_last(*impl_);
}

Result<std::optional<std::string>> table::next(std::string_view key) const {
  if (impl_->type != table_type::ordered_set) {
    return errc::invalid_argument;
  }
  return ordered_next(*impl_, key);
}

Result<std::vector<entry>> table::range(std::string_view lo, std::string_view hi,
                                        std::size_t limit) const {
  if (impl_->type != table_type::ordered_set) {
    return errc::invalid_argument;
  }
  return ordered_range(*impl_, lo, hi, limit);
}

std::uint64_t table::size() const noexcept {
  return impl_->total_count();
}
std::uint64_t table::memory() const noexcept {
  return impl_->seg_size;
}
std::uint64_t table::repairs() const noexcept {
  return impl_->repairs;
}

table_info table::info() const {
  const impl& t = *impl_;
  table_info i;
  i.node = t.node;
  i.name = t.name;
  i.type = t.type;
  i.access = t.access;
  i.policy = t.policy;
  i.size = t.total_count();
  i.payload_bytes = t.total_bytes();
  i.memory = t.seg_size;
  i.max_entries = t.max_entries;
  i.max_bytes = t.max_bytes;
  i.max_item_bytes = t.max_item;
  i.stripes = t.stripes;
  i.owner = ld(t.hdr->owner_pid);
  i.owner_alive = detail::pid_alive_not_zombie(i.owner);
  i.repairs = ld(t.hdr->repairs);
  return i;
}

}  // namespace otpd::shm_table

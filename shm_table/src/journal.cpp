#include "journal.hpp"

#include <cstddef>
#include <vector>

namespace otpd::shm_table {

namespace fault_injection {
int crash_at = 0;
int crash_points = 0;
int crash_signal = SIGKILL;

void crash_at_point(int n) noexcept {
  crash_at = n;
  crash_points = 0;
  crash_signal = SIGKILL;
}

void stop_at_point(int n) noexcept {
  crash_at = n;
  crash_points = 0;
  crash_signal = SIGSTOP;
}
}  // namespace fault_injection

namespace {

// Whether [off, off+len) lies inside one of the regions a writer of stripe s
// saves: its header's counters and skip list head, its buckets, its links,
// its slots. A journal is in the segment, so any process of the node could
// have written it: a record pointing anywhere else (the header, a mutex,
// another stripe, the journals, past the end) is damage, not a write to undo.
bool undo_target_ok(const table::impl& t, std::uint32_t s, std::uint64_t off, std::uint64_t len) {
  auto within = [&](std::uint64_t lo, std::uint64_t size) {
    return off >= lo && len <= size && off - lo <= size - len;
  };
  std::uint64_t sh = static_cast<std::uint64_t>(reinterpret_cast<char*>(&t.stripe(s)) - t.base);
  std::uint64_t fields = offsetof(detail::stripe_hdr, count);
  std::uint64_t bucket0 = static_cast<std::uint64_t>(reinterpret_cast<char*>(t.buckets) - t.base) +
                          static_cast<std::uint64_t>(s) * t.bpp * sizeof(std::uint32_t);
  std::uint64_t link0 = static_cast<std::uint64_t>(reinterpret_cast<char*>(t.links) - t.base) +
                        static_cast<std::uint64_t>(s) * t.spp * sizeof(detail::slot_link);
  std::uint64_t slot0 =
      static_cast<std::uint64_t>(t.slots - t.base) + static_cast<std::uint64_t>(s) * t.stripe_bytes;
  return within(sh + fields, sizeof(detail::stripe_hdr) - fields) ||
         within(bucket0, static_cast<std::uint64_t>(t.bpp) * sizeof(std::uint32_t)) ||
         within(link0, static_cast<std::uint64_t>(t.spp) * sizeof(detail::slot_link)) ||
         within(slot0, t.stripe_bytes);
}

}  // namespace

// Replays the records in reverse. A record is counted only once complete, and
// replaying restores old bytes, so a repairer killed half way leaves a
// journal the next repairer replays again to the same result.
//
// The journal is copied out first and every record checked before any is
// applied (another process may be writing random bytes into it meanwhile):
// a count or a record that no writer could have left means the journal is
// damaged, and nothing is applied.
bool table::impl::undo(std::uint32_t s) const {
  detail::journal_hdr* j = journal(s);
  std::uint32_t n = __atomic_load_n(&j->n, __ATOMIC_ACQUIRE);
  if (n == 0) {
    return true;
  }
  const std::uint64_t size = journal_bytes;
  if (size < sizeof(detail::journal_hdr) ||
      n > (size - sizeof(detail::journal_hdr)) / sizeof(detail::undo_rec)) {
    return false;
  }
  std::vector<char> copy(size);
  std::memcpy(copy.data(), j, size);
  std::vector<std::uint64_t> recs;
  recs.reserve(n);
  std::uint64_t pos = sizeof(detail::journal_hdr);
  for (std::uint32_t i = 0; i < n; ++i) {
    detail::undo_rec r;
    if (pos > size || size - pos < sizeof r) {
      return false;
    }
    std::memcpy(&r, copy.data() + pos, sizeof r);
    // Every bound as a subtraction: off + len could wrap a u64.
    if (r.len > size - pos - sizeof r || !undo_target_ok(*this, s, r.off, r.len)) {
      return false;
    }
    recs.push_back(pos);
    pos += sizeof r + detail::round_up(r.len, 8);
  }
  for (auto it = recs.rbegin(); it != recs.rend(); ++it) {  // NOLINT(modernize-loop-convert)
    detail::undo_rec r;
    std::memcpy(&r, copy.data() + *it, sizeof r);
    std::memcpy(base + r.off, copy.data() + *it + sizeof r, r.len);
  }
  std::atomic_thread_fence(std::memory_order_release);
  __atomic_store_n(&j->n, 0u, __ATOMIC_RELEASE);
  return true;
}

}  // namespace otpd::shm_table

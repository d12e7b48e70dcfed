#include "journal.hpp"

#include <vector>

namespace otpd::shm_table {

namespace fault_injection {
int crash_at = 0;
int crash_points = 0;

void crash_at_point(int n) noexcept {
  crash_at = n;
  crash_points = 0;
}
}  // namespace fault_injection

// Replays the records in reverse. A record is counted only once complete, and
// replaying restores old bytes, so a repairer killed half way leaves a
// journal the next repairer replays again to the same result.
void table::impl::undo(std::uint32_t s) const {
  detail::journal_hdr* j = journal(s);
  std::uint32_t n = __atomic_load_n(&j->n, __ATOMIC_ACQUIRE);
  if (n == 0) {
    return;
  }
  std::vector<const char*> recs;
  recs.reserve(n);
  const char* p = reinterpret_cast<const char*>(j) + sizeof(detail::journal_hdr);
  const char* end = reinterpret_cast<const char*>(j) + journal_bytes;
  for (std::uint32_t i = 0; i < n; ++i) {
    detail::undo_rec r;
    if (p + sizeof r > end) {
      break;
    }
    std::memcpy(&r, p, sizeof r);
    if (r.off + r.len > seg_size || p + sizeof r + r.len > end) {
      break;  // cannot happen: a record is counted only once complete
    }
    recs.push_back(p);
    p += sizeof r + detail::round_up(r.len, 8);
  }
  for (auto it = recs.rbegin(); it != recs.rend(); ++it) {  // NOLINT(modernize-loop-convert)
    detail::undo_rec r;
    std::memcpy(&r, *it, sizeof r);
    std::memcpy(base + r.off, *it + sizeof r, r.len);
  }
  std::atomic_thread_fence(std::memory_order_release);
  __atomic_store_n(&j->n, 0u, __ATOMIC_RELEASE);
}

}  // namespace otpd::shm_table

#pragma once

// The undo journal, and the write transaction on one stripe built on it.
//
// Writers lock the stripe (table_impl.hpp), make its sequence counter odd,
// then before every store into the segment append an undo record (offset,
// length, old bytes) to the stripe's journal and publish it by bumping the
// journal's record count. The write commits by resetting that count to 0,
// then the counter goes even and the mutex is released; only then does the
// call return success. An operation that fails half way rolls back through
// the same journal; an operation that needs more undo space than one journal
// (clear, select_delete, an insert evicting many entries) commits step by
// step, each step a complete change. Records are published with a release
// store followed by a fence, so a record is always in memory before the
// bytes it protects change, whatever instruction the writer dies at.

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "table_impl.hpp"

#include <otpd/core/log.hpp>
#include <otpd/shm_table/fault_injection.hpp>

namespace otpd::shm_table {

namespace fault_injection {
extern int crash_at;  // per process: set only in a test's forked child
extern int crash_points;
extern int crash_signal;

// A crash point: dies (or stops) here when a test asked for this one.
inline void point() noexcept {
  if (crash_at != 0 && ++crash_points == crash_at) {
    ::raise(crash_signal);
  }
}
}  // namespace fault_injection

namespace detail {

// A write transaction on one stripe: lock (with repair), seqlock odd, undo
// records before every store, commit, seqlock even, unlock. Destroyed without
// commit, it rolls the stripe back.
class writer {
 public:
  writer(const table::impl& t, std::uint32_t s) : t_(t), s_(s) {
    auto r = t_.lock(s_);
    if (!r) {
      ec_ = r.error();
      return;
    }
    locked_ = true;
    j_ = t_.journal(s_);
    reset_cursor();
    seq_write_begin(t_.stripe(s_).seq);
  }
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;
  writer(writer&&) = delete;
  writer& operator=(writer&&) = delete;
  ~writer() {
    if (!locked_) {
      return;
    }
    if (n_ != 0) {
      (void)t_.undo(s_);
    }
    seq_write_end(t_.stripe(s_).seq);
    t_.unlock(s_);
  }

  [[nodiscard]] bool ok() const { return locked_; }
  // Rolls back and answers errc::corrupt: the write met an index or a length
  // that no writer leaves (random bytes in the segment), or the segment was
  // shrunk under it.
  [[nodiscard]] std::error_code corrupt() {
    rollback();
    return core::make_error_code(core::errc::corrupt);
  }
  [[nodiscard]] std::error_code error() const { return ec_; }

  // Journals the current bytes of [p, p+len) before the caller changes them.
  void save(const void* p, std::size_t len) {
    auto off = static_cast<std::uint64_t>(static_cast<const char*>(p) - t_.base);
    undo_rec r{off, static_cast<std::uint32_t>(len), 0};
    std::size_t need = sizeof r + round_up(len, 8);
    char* end = reinterpret_cast<char*>(j_) + t_.journal_bytes;
    if (cursor_ + need > end) {
      // The journal is sized for the largest operation; overflowing it is a bug.
      core::log_error("shm_table {}: undo journal overflow", t_.name);
      std::abort();
    }
    fault_injection::point();
    std::memcpy(cursor_, &r, sizeof r);
    std::memcpy(cursor_ + sizeof r, p, len);
    cursor_ += need;
    ++n_;
    // The record must be in memory before the bytes it protects change.
    __atomic_store_n(&j_->n, n_, __ATOMIC_RELEASE);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    fault_injection::point();
  }
  template <class T>
  void save_field(const T& x) {
    save(&x, sizeof x);
  }

  // Everything written so far stays, even if this process dies next.
  void commit() {
    fault_injection::point();
    std::atomic_thread_fence(std::memory_order_release);
    __atomic_store_n(&j_->n, 0u, __ATOMIC_RELEASE);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    n_ = 0;
    reset_cursor();
    fault_injection::point();
  }
  void rollback() {
    (void)t_.undo(s_);
    n_ = 0;
    reset_cursor();
  }

 private:
  void reset_cursor() { cursor_ = reinterpret_cast<char*>(j_) + sizeof(journal_hdr); }

  const table::impl& t_;
  std::uint32_t s_;
  bool locked_ = false;
  std::error_code ec_;
  journal_hdr* j_ = nullptr;
  char* cursor_ = nullptr;
  std::uint32_t n_ = 0;
};

}  // namespace detail
}  // namespace otpd::shm_table

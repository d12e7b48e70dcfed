#pragma once

// The robust-mutex lock and the seqlock that every shared area of shm_table
// uses: each stripe of a table, and the persistent_term area.
//
// Writers lock a pthread mutex made PTHREAD_MUTEX_ROBUST and
// PTHREAD_PROCESS_SHARED, so a writer SIGKILLed while holding it does not
// hang the others: the kernel marks the mutex, and the next locker gets
// EOWNERDEAD. That locker repairs what the dead writer left half done, and
// only then calls pthread_mutex_consistent. How to repair is the caller's:
// a table replays its stripe's undo journal (table_impl.hpp); persistent_term
// needs nothing (no_repair), since its writer only ever touches an idle
// buffer that the next writer rebuilds. A repairer killed while repairing
// leaves the job to the next locker, who gets EOWNERDEAD again, so a repair
// must be idempotent.
//
// Readers take no lock: a sequence counter, odd while a write is in flight,
// is read before and after the read (seq_read_begin / seq_read_valid); any
// change means a write overlapped, and the reader retries.

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace otpd::shm_table::detail {

// Every word another process may change while we read it is read and written
// with these (relaxed atomics: no torn words, no compiler-cached values).
template <class T>
T ld(const T& x) noexcept {
  return __atomic_load_n(&x, __ATOMIC_RELAXED);
}
template <class T, class U>
void st(T& x, U v) noexcept {
  __atomic_store_n(&x, static_cast<T>(v), __ATOMIC_RELAXED);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// A robust, process-shared mutex: the next locker after a holder's death gets
// EOWNERDEAD instead of hanging.
void init_robust_mutex(pthread_mutex_t* m);

// The repair policy of an area that needs none.
struct no_repair {
  void repair() const noexcept {}
  [[nodiscard]] bool dirty() const noexcept { return false; }
};

// Locks m. Policy has repair(), run with m held when a previous holder died
// (before the mutex is made consistent again), and dirty(), true when a
// normally acquired area still shows a half-done write (then repair() runs
// too). Returns 0 or the pthread error (then m is not held).
template <class Policy>
[[nodiscard]] int robust_lock(pthread_mutex_t& m, const Policy& policy) noexcept {
  int rc = ::pthread_mutex_lock(&m);
  if (rc == EOWNERDEAD) {
    policy.repair();
    ::pthread_mutex_consistent(&m);
    return 0;
  }
  if (rc != 0) {
    return rc;
  }
  if (policy.dirty()) {
    policy.repair();
  }
  return 0;
}

// For a reader that keeps seeing a write in flight: checks, without
// blocking, whether the writer is dead, and repairs the area if so.
template <class Policy>
void robust_try_repair(pthread_mutex_t& m, const Policy& policy) noexcept {
  int rc = ::pthread_mutex_trylock(&m);
  if (rc == EOWNERDEAD) {
    policy.repair();
    ::pthread_mutex_consistent(&m);
    ::pthread_mutex_unlock(&m);
  } else if (rc == 0) {
    if (policy.dirty()) {
      policy.repair();
    }
    ::pthread_mutex_unlock(&m);
  }
}

// --- the seqlock -------------------------------------------------------------

// The counter before a read; an odd value means a write is in flight.
inline std::uint64_t seq_read_begin(const std::uint64_t& seq) noexcept {
  return __atomic_load_n(&seq, __ATOMIC_ACQUIRE);
}
// After the read: true when no write overlapped it (q1 must have been even).
inline bool seq_read_valid(const std::uint64_t& seq, std::uint64_t q1) noexcept {
  std::atomic_thread_fence(std::memory_order_acquire);
  return ld(seq) == q1;
}
// Writer, lock held: the counter goes odd before the first store (a dead
// writer may have left it odd already).
inline void seq_write_begin(std::uint64_t& seq) noexcept {
  st(seq, ld(seq) | 1);
  std::atomic_thread_fence(std::memory_order_release);
}
// Writer, lock held: the counter goes even after the last store.
inline void seq_write_end(std::uint64_t& seq) noexcept {
  __atomic_store_n(&seq, ld(seq) + 1, __ATOMIC_RELEASE);
}
// Repair, lock held: a dead writer's odd counter goes even again.
inline void seq_repair(std::uint64_t& seq) noexcept {
  std::uint64_t q = ld(seq);
  if ((q & 1) != 0) {
    __atomic_store_n(&seq, q + 1, __ATOMIC_RELEASE);
  }
}

}  // namespace otpd::shm_table::detail

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
#include <signal.h>
#include <time.h>

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

// Whether m's kind word is the one init_robust_mutex writes. A mutex whose
// kind was overwritten (random bytes in the segment) may act as another type
// entirely, so it is refused before glibc sees it.
[[nodiscard]] bool robust_mutex_kind_ok(const pthread_mutex_t& m) noexcept;

// After a lock attempt timed out: whether the lock word names a live thread
// that glibc itself recorded as the owner (the word and the owner field
// agree). If not, the word is garbage nobody will ever release: corrupt.
[[nodiscard]] bool robust_mutex_holder_alive(const pthread_mutex_t& m) noexcept;

// The repair policy of an area that needs none.
struct no_repair {
  [[nodiscard]] bool repair() const noexcept { return true; }
  [[nodiscard]] bool dirty() const noexcept { return false; }
};

// What robust_lock answers besides 0 (held).
// ETIMEDOUT: a live thread held m for all of wait_ms (errc::busy).
// ENOTRECOVERABLE: m cannot be used: its kind word is not ours, glibc
// refuses it (ENOTRECOVERABLE, EINVAL, EDEADLK), its lock word names no live
// owner, or the repair of a dead holder's half-done write failed
// (errc::corrupt).
constexpr int lock_busy = ETIMEDOUT;
constexpr int lock_corrupt = ENOTRECOVERABLE;

// Locks m, waiting at most wait_ms (CLOCK_MONOTONIC): random bytes in a lock
// word could otherwise block pthread_mutex_lock forever. Policy has repair()
// (false: the area cannot be repaired), run with m held when a previous
// holder died (before the mutex is made consistent again), and dirty(), true
// when a normally acquired area still shows a half-done write (then repair()
// runs too). Returns 0 (m held), lock_busy or lock_corrupt (m not held). A
// failed repair of a dead holder's write leaves m unrecoverable for good
// (unlocked without pthread_mutex_consistent): every later locker gets
// lock_corrupt, as it should, since nobody knows the area's state.
template <class Policy>
[[nodiscard]] int robust_lock(pthread_mutex_t& m, const Policy& policy, int wait_ms) noexcept {
  if (!robust_mutex_kind_ok(m)) {
    return lock_corrupt;
  }
  timespec until{};
  ::clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += wait_ms / 1000;
  until.tv_nsec += static_cast<long>(wait_ms % 1000) * 1'000'000L;
  if (until.tv_nsec >= 1'000'000'000L) {
    until.tv_sec += 1;
    until.tv_nsec -= 1'000'000'000L;
  }
  int rc = ::pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &until);
  if (rc == EOWNERDEAD) {
    if (!policy.repair()) {
      ::pthread_mutex_unlock(&m);
      return lock_corrupt;
    }
    ::pthread_mutex_consistent(&m);
    return 0;
  }
  if (rc == ETIMEDOUT) {
    return robust_mutex_holder_alive(m) ? lock_busy : lock_corrupt;
  }
  if (rc != 0) {
    return lock_corrupt;
  }
  if (policy.dirty() && !policy.repair()) {
    ::pthread_mutex_unlock(&m);
    return lock_corrupt;
  }
  return 0;
}

// For a reader that keeps seeing a write in flight: checks, without
// blocking, whether the writer is dead, and repairs the area if so. Returns
// 0 (repaired, or nothing to do), lock_busy (held by a live thread) or
// lock_corrupt.
template <class Policy>
[[nodiscard]] int robust_try_repair(pthread_mutex_t& m, const Policy& policy) noexcept {
  if (!robust_mutex_kind_ok(m)) {
    return lock_corrupt;
  }
  int rc = ::pthread_mutex_trylock(&m);
  if (rc == EOWNERDEAD) {
    if (!policy.repair()) {
      ::pthread_mutex_unlock(&m);
      return lock_corrupt;
    }
    ::pthread_mutex_consistent(&m);
    ::pthread_mutex_unlock(&m);
    return 0;
  }
  if (rc == EBUSY) {
    return robust_mutex_holder_alive(m) ? lock_busy : lock_corrupt;
  }
  if (rc != 0) {
    return lock_corrupt;
  }
  bool ok = !policy.dirty() || policy.repair();
  ::pthread_mutex_unlock(&m);
  return ok ? 0 : lock_corrupt;
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

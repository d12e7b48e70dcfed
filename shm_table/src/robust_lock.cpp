#include "robust_lock.hpp"

#include <sched.h>
#include <signal.h>

namespace otpd::shm_table::detail {

void init_robust_mutex(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

namespace {

// The kind word of a mutex made by init_robust_mutex (glibc's ABI: robust,
// process-shared, normal type), read once from a local one.
int expected_kind() noexcept {
  static const int kind = [] {
    pthread_mutex_t m;
    init_robust_mutex(&m);
    int k = m.__data.__kind;
    pthread_mutex_destroy(&m);
    return k;
  }();
  return kind;
}

}  // namespace

bool robust_mutex_kind_ok(const pthread_mutex_t& m) noexcept {
  return __atomic_load_n(&m.__data.__kind, __ATOMIC_RELAXED) == expected_kind();
}

bool robust_mutex_holder_alive(const pthread_mutex_t& m) noexcept {
  // FUTEX_TID_MASK: the low 30 bits of a robust futex word are the owner's tid.
  auto agree = [&] {
    int tid = __atomic_load_n(&m.__data.__lock, __ATOMIC_RELAXED) & 0x3fffffff;
    return tid != 0 && __atomic_load_n(&m.__data.__owner, __ATOMIC_RELAXED) == tid ? tid : 0;
  };
  int tid = agree();
  if (tid == 0) {
    // glibc stores the owner field just after the lock word: look again
    // past that window before calling the word garbage.
    ::sched_yield();
    tid = agree();
  }
  if (tid == 0) {
    return false;
  }
  // kill() takes a thread's id as well as a process's.
  return ::kill(tid, 0) == 0 || errno == EPERM;
}

}  // namespace otpd::shm_table::detail

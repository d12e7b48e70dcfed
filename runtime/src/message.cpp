#include <fcntl.h>
#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <new>
#include <ostream>

#include <otpd/runtime/message.hpp>
#include <otpd/runtime/term.hpp>

namespace otpd::runtime {
namespace {

std::atomic<std::uint64_t> g_ref_counter{0};
// The pid the salt was drawn for; 0 until the first ref, and again in a
// fork()ed child (the handler below). Read instead of calling getpid(),
// which glibc no longer caches: a syscall per ref costs about a
// microsecond on a virtual machine, a third of a call's round trip.
std::atomic<pid_t> g_ref_pid{0};
std::atomic<std::uint64_t> g_ref_salt{0};
void forget_ref_pid() noexcept {
  g_ref_pid.store(0, std::memory_order_relaxed);
}
[[maybe_unused]] const int g_ref_atfork = ::pthread_atfork(nullptr, nullptr, forget_ref_pid);

}  // namespace

namespace detail {
namespace {
// The capacity of the blocks that their connection has let go of while
// bodies still viewed them (see orphan()).
std::atomic<std::size_t> g_orphaned{0};
}  // namespace
std::size_t orphaned_bytes() noexcept {
  return g_orphaned.load(std::memory_order_relaxed);
}
void orphan(shared_block* b) noexcept {
  if (b->refs.load(std::memory_order_acquire) != 1) {
    b->orphan = true;
    g_orphaned.fetch_add(b->capacity, std::memory_order_relaxed);
  }
  shared_block::release(b);
}
void note_orphan_freed(std::size_t capacity) noexcept {
  g_orphaned.fetch_sub(capacity, std::memory_order_relaxed);
}
}  // namespace detail

shared_block* shared_block::make(std::size_t capacity) {
  // One allocation for the header and the bytes after it.
  void* mem = ::operator new(sizeof(shared_block) + capacity);
  auto* b = new (mem) shared_block;
  b->capacity = capacity;
  return b;
}

void shared_block::destroy(shared_block* b) noexcept {
  if (b->orphan) {
    detail::note_orphan_freed(b->capacity);
  }
  b->~shared_block();
  ::operator delete(static_cast<void*>(b));
}

void bytes::init_large(std::string_view s) {
  block_ = shared_block::make(s.size());
  std::memcpy(block_->data(), s.data(), s.size());
  ptr_ = block_->data();
  size_ = s.size();
}

void bytes::assign(std::string_view s) {
  // Built aside, then swapped in: s may view this very body.
  bytes t(s);
  swap(t);
}

std::ostream& operator<<(std::ostream& os, const bytes& b) {
  return os << b.view();
}

ref make_ref() noexcept {
  // hi = pid << 32 | random salt drawn once per process (after a fork the
  // child draws a new one), lo = counter: unique across processes and pid reuse.
  pid_t pid = g_ref_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = ::getpid();
    std::uint32_t salt = 0;
    if (::getrandom(&salt, sizeof salt, 0) != static_cast<ssize_t>(sizeof salt)) {
      salt = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&salt));
    }
    g_ref_salt.store(salt, std::memory_order_relaxed);
    g_ref_pid.store(pid, std::memory_order_relaxed);
    g_ref_counter.store(0, std::memory_order_relaxed);
  }
  std::uint64_t hi = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) |
                     g_ref_salt.load(std::memory_order_relaxed);
  return ref{hi, g_ref_counter.fetch_add(1, std::memory_order_relaxed) + 1};
}

std::string to_string(const ref& r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "#Ref<%u.%08x.%llu>", static_cast<unsigned>(r.hi >> 32),
                static_cast<unsigned>(r.hi & 0xffffffffu), static_cast<unsigned long long>(r.lo));
  return buf;
}

const char* to_string(kind k) noexcept {
  switch (k) {
    case kind::user:
      return "user";
    case kind::call:
      return "call";
    case kind::reply:
      return "reply";
    case kind::cast:
      return "cast";
    case kind::down:
      return "down";
    case kind::exit:
      return "exit";
    case kind::link:
      return "link";
    case kind::unlink:
      return "unlink";
    case kind::result:
      return "result";
    case kind::system:
      return "system";
  }
  return "unknown";
}

std::string pack_reason(const core::exit_reason& r) {
  return pack(std::tuple<int, int>(static_cast<int>(r.kind), r.value));
}

core::exit_reason message::reason() const {
  auto t = unpack<std::tuple<int, int>>(body);
  if (!t) {
    return {core::exit_kind::unknown, 0};
  }
  // A kind this build does not know (a newer peer) reads as unknown, which
  // counts as abnormal.
  return core::exit_reason::from_codes(std::get<0>(*t), std::get<1>(*t));
}

}  // namespace otpd::runtime

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <otpd/runtime/message.hpp>
#include <otpd/runtime/term.hpp>

namespace otpd::runtime {
namespace {

std::atomic<std::uint64_t> g_ref_counter{0};
std::atomic<pid_t> g_ref_pid{0};
std::atomic<std::uint64_t> g_ref_salt{0};

}  // namespace

ref make_ref() noexcept {
  // hi = pid << 32 | random salt drawn once per process (after a fork the
  // child draws a new one), lo = counter: unique across processes and pid reuse.
  pid_t pid = ::getpid();
  if (g_ref_pid.load(std::memory_order_relaxed) != pid) {
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

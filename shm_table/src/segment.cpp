#include "segment.hpp"

#include <sched.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <boost/interprocess/exceptions.hpp>
#include <fmt/format.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/result.hpp>

namespace otpd::shm_table::detail {

namespace bip = boost::interprocess;
using core::errc;
using core::Result;

namespace {

std::error_code from_boost(const bip::interprocess_exception& e) {
  switch (e.get_error_code()) {
    case bip::already_exists_error:
      return core::make_error_code(errc::already_exists);
    case bip::not_found_error:
      return core::make_error_code(errc::not_found);
    case bip::security_error:
      return core::make_error_code(errc::access_denied);
    default:
      break;
  }
  int native = e.get_native_error();
  return native != 0 ? core::errno_code(native) : core::make_error_code(errc::invalid_argument);
}

}  // namespace

Result<std::unique_ptr<segment>> create_segment(const std::string& name, std::size_t size) {
  try {
    auto seg = std::make_unique<segment>();
    // Boost fchmod()s after shm_open, so the mode is 0600 whatever the umask.
    seg->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                         bip::permissions(0600));
    try {
      seg->shm.truncate(static_cast<bip::offset_t>(size));
      seg->region = bip::mapped_region(seg->shm, bip::read_write);
    } catch (...) {
      bip::shared_memory_object::remove(name.c_str());
      throw;
    }
    return seg;
  } catch (const bip::interprocess_exception& e) {
    return from_boost(e);
  }
}

Result<std::unique_ptr<segment>> open_segment(const std::string& name) {
  try {
    auto seg = std::make_unique<segment>();
    seg->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    bip::offset_t sz = 0;
    if (!seg->shm.get_size(sz) || sz <= 0) {
      // A creator between shm_open and ftruncate: not a table yet.
      return errc::busy;
    }
    seg->region = bip::mapped_region(seg->shm, bip::read_write);
    return seg;
  } catch (const bip::interprocess_exception& e) {
    return from_boost(e);
  }
}

Result<void> remove_segment(const std::string& name) {
  if (!bip::shared_memory_object::remove(name.c_str())) {
    return errc::not_found;
  }
  return {};
}

bool wait_ready(const std::uint64_t* magic_word, std::uint64_t magic, int timeout_ms) {
  auto d = core::deadline::after(core::milliseconds(timeout_ms));
  while (__atomic_load_n(magic_word, __ATOMIC_ACQUIRE) != magic) {
    if (d.expired()) {
      return false;
    }
    ::sched_yield();
  }
  return true;
}

bool pid_alive(pid_t pid) noexcept {
  if (pid <= 0) {
    return false;
  }
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

bool pid_alive_not_zombie(pid_t pid) {
  if (!pid_alive(pid)) {
    return false;
  }
  FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "re");
  if (f == nullptr) {
    return true;
  }
  char buf[512];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* close = std::strrchr(buf, ')');
  return !(close != nullptr && close[1] == ' ' && close[2] == 'Z');
}

}  // namespace otpd::shm_table::detail

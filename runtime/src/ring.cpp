// Creating, checking and mapping the memfd of a mailbox ring (ring.hpp has
// the protocol).
#include "ring.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <new>

namespace otpd::runtime::ring {

using core::errc;
using core::errno_code;
using core::Result;
using core::unique_fd;

namespace {

std::size_t page_size() {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

// The control area: one page (or more, if a page is smaller than control).
std::size_t control_size() {
  std::size_t p = page_size();
  return ((sizeof(control) + p - 1) / p) * p;
}

bool power_of_two(std::size_t n) {
  return n != 0 && (n & (n - 1)) == 0;
}

// Maps fd as [control][data][data again]. The second data mapping makes a
// frame that wraps round the end of the ring contiguous.
Result<void*> map_twice(int fd, std::size_t capacity, std::size_t& length) {
  std::size_t ctl = control_size();
  length = ctl + 2 * capacity;
  void* base =
      ::mmap(nullptr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return errno_code();
  }
  auto* b = static_cast<char*>(base);
  if (::mmap(b, ctl + capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
          MAP_FAILED ||
      ::mmap(b + ctl + capacity, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
             static_cast<off_t>(ctl)) == MAP_FAILED) {
    auto ec = errno_code();
    ::munmap(base, length);
    return ec;
  }
  return base;
}

}  // namespace

mapping::~mapping() {
  if (base_ != nullptr) {
    ::munmap(base_, length_);
  }
}

Result<mapping> mapping::create(std::size_t capacity, unique_fd& fd_out) {
  if (!power_of_two(capacity) || capacity < min_capacity || capacity > max_capacity ||
      capacity % page_size() != 0) {
    return errc::invalid_argument;
  }
  unique_fd fd(::memfd_create("otpd-mailbox-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) {
    return errno_code();
  }
  std::size_t size = control_size() + capacity;
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return errno_code();
  }
  // Sealed: the sender can neither shrink it under our mapping (a read past
  // the end would be SIGBUS) nor grow it, nor change the seals.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_code();
  }
  std::size_t length = 0;
  auto base = map_twice(fd.get(), capacity, length);
  if (!base) {
    return base.error();
  }
  mapping m;
  m.base_ = *base;
  m.length_ = length;
  m.ctl_ = new (*base) control{};  // the memfd is zero-filled: this only starts the lifetimes
  m.ctl_->magic = ring_magic;
  m.ctl_->capacity = capacity;
  m.data_ = static_cast<char*>(*base) + control_size();
  m.capacity_ = capacity;
  fd_out = std::move(fd);
  return m;
}

Result<mapping> mapping::attach(int fd) {
  // The receiver may be hostile too: only a memfd sealed against shrinking,
  // of a sane size, is mapped (F_GET_SEALS fails on anything but a memfd).
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return errc::invalid_argument;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return errno_code();
  }
  if (st.st_size < 0 || static_cast<std::size_t>(st.st_size) <= control_size()) {
    return errc::invalid_argument;
  }
  std::size_t capacity = static_cast<std::size_t>(st.st_size) - control_size();
  if (!power_of_two(capacity) || capacity < min_capacity || capacity > max_capacity ||
      capacity % page_size() != 0) {
    return errc::invalid_argument;
  }
  std::size_t length = 0;
  auto base = map_twice(fd, capacity, length);
  if (!base) {
    return base.error();
  }
  mapping m;
  m.base_ = *base;
  m.length_ = length;
  m.ctl_ = static_cast<control*>(*base);
  m.data_ = static_cast<char*>(*base) + control_size();
  m.capacity_ = capacity;
  if (m.ctl_->magic != ring_magic || m.ctl_->capacity != capacity) {
    return errc::invalid_argument;  // m unmaps
  }
  return m;
}

}  // namespace otpd::runtime::ring

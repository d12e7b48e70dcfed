#include "segment.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/result.hpp>

namespace otpd::shm_table::detail {

using core::errc;
using core::Result;
using core::unique_fd;

namespace {

// --- the SIGBUS guard (see segment.hpp) ---------------------------------------

// Mappings a process may hold at once; beyond it a map is refused (busy).
constexpr int max_guards = 4096;

struct guard_slot {
  std::atomic<bool> used{false};
  std::atomic<std::uintptr_t> base{0};  // set last (release): the handler's key
  std::atomic<std::size_t> size{0};
  std::atomic<bool> damaged{false};
};

guard_slot g_guards[max_guards];
std::atomic<int> g_high{0};  // slots [0, g_high) may be in use
struct sigaction g_prev {};
std::uintptr_t g_page = 4096;
std::once_flag g_installed;

void chain(int sig, siginfo_t* si, void* uc) {
  if ((g_prev.sa_flags & SA_SIGINFO) != 0 && g_prev.sa_sigaction != nullptr) {
    g_prev.sa_sigaction(sig, si, uc);
    return;
  }
  if ((g_prev.sa_flags & SA_SIGINFO) == 0 && g_prev.sa_handler != SIG_DFL &&
      g_prev.sa_handler != SIG_IGN) {
    g_prev.sa_handler(sig);
    return;
  }
  // The default action: restored, then a fault re-runs and kills as it would
  // have without us; a SIGBUS sent by kill() is raised again.
  struct sigaction d {};
  d.sa_handler = SIG_DFL;
  sigemptyset(&d.sa_mask);
  ::sigaction(SIGBUS, &d, nullptr);
  if (si == nullptr || si->si_code <= 0) {
    ::raise(SIGBUS);
  }
}

void on_sigbus(int sig, siginfo_t* si, void* uc) {
  int saved = errno;
  if (si != nullptr && si->si_code > 0) {
    auto a = reinterpret_cast<std::uintptr_t>(si->si_addr);
    int n = g_high.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
      std::uintptr_t b = g_guards[i].base.load(std::memory_order_acquire);
      std::size_t len = g_guards[i].size.load(std::memory_order_relaxed);
      if (b == 0 || a < b || a - b >= len) {
        continue;
      }
      // Past the file's end: private zero pages from here to the mapping's
      // end (mmap is a plain syscall, safe here in practice though not on
      // POSIX's list).
      std::uintptr_t page = a & ~(g_page - 1);
      void* r = ::mmap(reinterpret_cast<void*>(page), b + len - page, PROT_READ | PROT_WRITE,
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (r != MAP_FAILED) {
        g_guards[i].damaged.store(true, std::memory_order_release);
        errno = saved;
        return;
      }
      break;
    }
  }
  errno = saved;
  chain(sig, si, uc);
}

void install_guard() {
  std::call_once(g_installed, [] {
    long p = ::sysconf(_SC_PAGESIZE);
    if (p > 0) {
      g_page = static_cast<std::uintptr_t>(p);
    }
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGBUS, &sa, &g_prev) != 0) {
      core::log_error("shm_table: unable to install the SIGBUS guard: {}", std::strerror(errno));
    }
  });
}

int register_guard(char* base, std::size_t size) {
  install_guard();
  for (int i = 0; i < max_guards; ++i) {
    bool expected = false;
    if (!g_guards[i].used.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      continue;
    }
    g_guards[i].damaged.store(false, std::memory_order_relaxed);
    g_guards[i].size.store(size, std::memory_order_relaxed);
    g_guards[i].base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
    int h = g_high.load(std::memory_order_relaxed);
    while (h < i + 1 && !g_high.compare_exchange_weak(h, i + 1, std::memory_order_release)) {
    }
    return i;
  }
  return -1;
}

void unregister_guard(int i) {
  g_guards[i].base.store(0, std::memory_order_release);
  g_guards[i].size.store(0, std::memory_order_relaxed);
  g_guards[i].used.store(false, std::memory_order_release);
}

std::string shm_path(const std::string& name) {
  return "/dev/shm/" + name;
}

}  // namespace

// --- segment -------------------------------------------------------------------

segment::~segment() {
  if (guard_ >= 0) {
    unregister_guard(guard_);
  }
  if (base_ != nullptr) {
    ::munmap(base_, size_);
  }
}

std::uint64_t segment::file_size() const noexcept {
  struct stat st {};
  if (!fd_ || ::fstat(fd_.get(), &st) != 0 || st.st_size < 0) {
    return 0;
  }
  return static_cast<std::uint64_t>(st.st_size);
}

Result<void> segment::map(unique_fd fd, std::size_t size, std::string name) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) {
    int e = errno;
    return {core::errno_code(e),
            fmt::format("unable to map segment {}: {}", shm_path(name), std::strerror(e))};
  }
  base_ = static_cast<char*>(p);
  size_ = size;
  fd_ = std::move(fd);
  name_ = std::move(name);
  guard_ = register_guard(base_, size_);
  if (guard_ < 0) {
    return {errc::busy, fmt::format("segment {}: this process maps {} segments already",
                                    shm_path(name_), max_guards)};
  }
  damaged_ = &g_guards[guard_].damaged;
  return {};
}

std::uint64_t shm_free_bytes() noexcept {
  struct statvfs v {};
  if (::statvfs("/dev/shm", &v) != 0) {
    return UINT64_MAX;
  }
  return static_cast<std::uint64_t>(v.f_bavail) * v.f_frsize;
}

Result<std::unique_ptr<segment>> create_segment(const std::string& name, std::size_t size) {
  std::string slash = "/" + name;
  unique_fd fd(::shm_open(slash.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    int e = errno;
    if (e == EEXIST) {
      return errc::already_exists;
    }
    return {core::errno_code(e),
            fmt::format("unable to create segment {}: {}", shm_path(name), std::strerror(e))};
  }
  auto fail = [&](int e, std::string what) -> Result<std::unique_ptr<segment>> {
    ::shm_unlink(slash.c_str());
    return {core::errno_code(e), std::move(what)};
  };
  // 0600 whatever the umask.
  if (::fchmod(fd.get(), 0600) != 0 || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    int e = errno;
    return fail(e, fmt::format("unable to size segment {}: {}", shm_path(name), std::strerror(e)));
  }
  // Reserve every page now: on a full /dev/shm this fails here, instead of
  // a SIGBUS in whichever process first touches a page later.
  if (int e = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); e != 0) {
    return fail(e, fmt::format("unable to reserve {} bytes for segment {} ({} bytes free in "
                               "/dev/shm): {}",
                               size, shm_path(name), shm_free_bytes(), std::strerror(e)));
  }
  auto seg = std::make_unique<segment>();
  if (auto m = seg->map(std::move(fd), size, name); !m) {
    ::shm_unlink(slash.c_str());
    return m.fail();
  }
  return seg;
}

Result<std::unique_ptr<segment>> open_segment(const std::string& name) {
  std::string slash = "/" + name;
  unique_fd fd(::shm_open(slash.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0));
  if (!fd) {
    int e = errno;
    if (e == ENOENT) {
      return errc::not_found;
    }
    if (e == EACCES || e == EPERM || e == ELOOP) {
      return {errc::access_denied, fmt::format("segment {}: {}", shm_path(name), std::strerror(e))};
    }
    return {core::errno_code(e),
            fmt::format("unable to open segment {}: {}", shm_path(name), std::strerror(e))};
  }
  // Checked on the fd we map, so the name cannot be swapped in between.
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    int e = errno;
    return {core::errno_code(e),
            fmt::format("unable to stat segment {}: {}", shm_path(name), std::strerror(e))};
  }
  uid_t me = ::geteuid();
  if (!S_ISREG(st.st_mode)) {
    return {errc::access_denied,
            fmt::format("segment {} is not a regular file: refused", shm_path(name))};
  }
  if (st.st_uid != me) {
    return {errc::access_denied,
            fmt::format("segment {} is owned by uid {}, not by this process's euid {}: refused "
                        "(another user may have made it; remove it if it is not yours)",
                        shm_path(name), st.st_uid, me)};
  }
  if ((st.st_mode & 077) != 0) {
    return {errc::access_denied,
            fmt::format("segment {} has mode {:04o}; a segment must be 0600 (group or other "
                        "access could let another user write it): refused",
                        shm_path(name), st.st_mode & 07777)};
  }
  if (st.st_size <= 0) {
    // A creator between shm_open and ftruncate: not a table yet.
    return errc::busy;
  }
  auto seg = std::make_unique<segment>();
  if (auto m = seg->map(std::move(fd), static_cast<std::size_t>(st.st_size), name); !m) {
    return m.fail();
  }
  return seg;
}

Result<void> remove_segment(const std::string& name) {
  // Only our own segments: a root otpd could unlink any user's file in
  // /dev/shm, and a name with our prefix may have been planted by someone
  // else. /dev/shm is sticky, so a file we own cannot be swapped for
  // another between this check and the unlink.
  struct stat st {};
  if (::lstat(shm_path(name).c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT) {
      return errc::not_found;
    }
    return {core::errno_code(e),
            fmt::format("unable to stat segment {}: {}", shm_path(name), std::strerror(e))};
  }
  if (st.st_uid != ::geteuid()) {
    return {errc::access_denied,
            fmt::format("segment {} is owned by uid {}, not by this process's euid {}: left alone",
                        shm_path(name), st.st_uid, ::geteuid())};
  }
  std::string slash = "/" + name;
  if (::shm_unlink(slash.c_str()) != 0) {
    int e = errno;
    if (e == ENOENT) {
      return errc::not_found;
    }
    return {core::errno_code(e),
            fmt::format("unable to remove segment {}: {}", shm_path(name), std::strerror(e))};
  }
  return {};
}

bool wait_ready(const std::uint64_t* magic_word, std::uint64_t magic, int timeout_ms) {
  auto d = core::deadline::after(core::milliseconds(timeout_ms));
  for (;;) {
    std::uint64_t m = __atomic_load_n(magic_word, __ATOMIC_ACQUIRE);
    if (m == magic) {
      return true;
    }
    // A creator publishes the magic over zeros: any other value will never
    // become ours.
    if (m != 0 || d.expired()) {
      return false;
    }
    ::sched_yield();
  }
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

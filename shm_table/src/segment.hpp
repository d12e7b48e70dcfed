#pragma once

// Mapping a named POSIX shared memory segment, shared by the table and the
// persistent_term area: shm_open, checks on the open fd, mmap.
//
// Trust. /dev/shm is writable by every user and segment names are
// predictable, so a name may already exist when we come to it, made by
// someone else. create_segment() uses O_CREAT|O_EXCL (never adopts what is
// there) and reserves the pages with posix_fallocate (a full /dev/shm is
// ENOSPC here, not a SIGBUS at some later first touch). open_segment()
// fstat()s the fd before mapping anything and refuses (errc::access_denied,
// with a message naming the segment and what is wrong) a segment that is
// not a regular file owned by our effective uid, or that has any group or
// other permission bit: only the node's own user may have made it.
//
// Shrink. A process of the same user can still ftruncate a live segment
// (seals exist only for memfds), after which our loads and stores past the
// new end fault with SIGBUS. Every mapping is registered in a small table
// that a process-wide SIGBUS handler consults: a fault inside a registered
// mapping is answered by mapping private zero pages over the rest of the
// mapping (mmap MAP_FIXED, one syscall) and marking the segment damaged;
// the faulting access then re-runs on those pages and the operation
// completes on garbage that the caller throws away: it checks damaged()
// and answers errc::corrupt. A fault anywhere else goes to the handler
// that was installed before ours (or to the default action). No longjmp,
// so no C++ frame is skipped; the cost on the fast path is one load of the
// damaged flag per operation.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::shm_table::detail {

class segment {
 public:
  segment() = default;
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;
  segment(segment&&) = delete;
  segment& operator=(segment&&) = delete;
  ~segment();

  [[nodiscard]] char* base() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  // True once an access faulted past the segment's end (someone shrank it):
  // everything read since is garbage, and the segment stays damaged.
  [[nodiscard]] bool damaged() const noexcept {
    return damaged_ != nullptr && damaged_->load(std::memory_order_acquire);
  }
  // The flag damaged() reads, for views that check it on a hot path; never
  // null once mapped.
  [[nodiscard]] const std::atomic<bool>* damage_flag() const noexcept { return damaged_; }
  // The segment's size now (fstat of the open fd), 0 when unknown.
  [[nodiscard]] std::uint64_t file_size() const noexcept;

  // Maps fd (size bytes) read-write and registers the mapping with the
  // SIGBUS guard. Used by create_segment / open_segment.
  [[nodiscard]] core::Result<void> map(core::unique_fd fd, std::size_t size, std::string name);

 private:
  core::unique_fd fd_;
  char* base_ = nullptr;
  std::size_t size_ = 0;
  std::string name_;
  int guard_ = -1;
  const std::atomic<bool>* damaged_ = nullptr;
};

// Creates name with mode 0600 and the given size (errc::already_exists when
// taken, whoever made it), its pages reserved and zero-filled.
[[nodiscard]] core::Result<std::unique_ptr<segment>> create_segment(const std::string& name,
                                                                    std::size_t size);
// Opens an existing segment: errc::not_found when missing, errc::busy while
// its creator has not sized it yet, errc::access_denied (with a message)
// when it is not ours (owner, mode, file type).
[[nodiscard]] core::Result<std::unique_ptr<segment>> open_segment(const std::string& name);
[[nodiscard]] core::Result<void> remove_segment(const std::string& name);

// Free bytes of the filesystem behind /dev/shm, or nullopt-like UINT64_MAX
// when statvfs fails.
[[nodiscard]] std::uint64_t shm_free_bytes() noexcept;

// Waits until a freshly created segment's magic is published by its creator
// (false when the deadline passes first: a creator still working or dead,
// the caller's errc::busy; false at once for a word that is neither 0 nor
// the magic: not such a segment, the caller's errc::corrupt).
bool wait_ready(const std::uint64_t* magic_word, std::uint64_t magic, int timeout_ms);

[[nodiscard]] bool pid_alive(pid_t pid) noexcept;
// pid_alive, and not a zombie: a killed owner stays a zombie until its parent
// reaps it, and it is dead.
[[nodiscard]] bool pid_alive_not_zombie(pid_t pid);

}  // namespace otpd::shm_table::detail

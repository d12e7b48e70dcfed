#pragma once

// Mapping a named POSIX shared memory segment, shared by the table and the
// persistent_term area. Boost.Interprocess owns the shm object and the
// mapping; nothing of Boost lives inside the segment (its mutexes and its
// allocator are not robust against a holder killed by SIGKILL).

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <otpd/core/result.hpp>

namespace otpd::shm_table::detail {

struct segment {
  boost::interprocess::shared_memory_object shm;
  boost::interprocess::mapped_region region;
  [[nodiscard]] char* base() const { return static_cast<char*>(region.get_address()); }
  [[nodiscard]] std::size_t size() const { return region.get_size(); }
};

// Creates name with mode 0600 and the given size (errc::already_exists when
// taken), zero-filled.
[[nodiscard]] core::Result<std::unique_ptr<segment>> create_segment(const std::string& name,
                                                                    std::size_t size);
// Opens an existing segment (errc::not_found when missing).
[[nodiscard]] core::Result<std::unique_ptr<segment>> open_segment(const std::string& name);
[[nodiscard]] core::Result<void> remove_segment(const std::string& name);

// Waits until a freshly created segment's magic is published by its creator,
// or the deadline passes (then errc::busy: a creator still working or dead).
bool wait_ready(const std::uint64_t* magic_word, std::uint64_t magic, int timeout_ms);

[[nodiscard]] bool pid_alive(pid_t pid) noexcept;
// pid_alive, and not a zombie: a killed owner stays a zombie until its parent
// reaps it, and it is dead.
[[nodiscard]] bool pid_alive_not_zombie(pid_t pid);

}  // namespace otpd::shm_table::detail

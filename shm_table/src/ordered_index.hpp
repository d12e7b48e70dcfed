#pragma once

// The ordered index of an ordered_set: its one stripe's slots form a skip
// list (up to max_level forward pointers after each slot's header; the
// head's in the stripe header), in key order (bytewise, then shorter first).
// Lock-free searches bound every walk, like the hash index's.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "journal.hpp"
#include "table_impl.hpp"

namespace otpd::shm_table::detail {

// <0, 0 or >0 as a sorts before, with or after b.
[[nodiscard]] int compare_keys(std::string_view a, std::string_view b);

// Skip list search: the last node before key on each level (update may be
// null), and the node holding key or nil.
std::uint32_t find_ordered(const table::impl& t, std::string_view key, std::uint32_t* update);

// Links the new slot idx, whose key is key, at a random level. False (the
// caller answers errc::corrupt) when the list's level is out of range.
[[nodiscard]] bool skip_link(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx,
                             std::string_view key);
// Unlinks slot idx, lowering the list's level when its top levels empty.
// False when the list's level is out of range.
[[nodiscard]] bool skip_unlink(const table::impl& t, writer& w, std::uint32_t s, std::uint32_t idx);

// Lock-free walks (retried until they saw a stable list; errc::busy or
// errc::corrupt as read_stripe says).
// The last live key.
[[nodiscard]] core::Result<std::optional<std::string>> ordered_last(const table::impl& t);
// The first live key after key.
[[nodiscard]] core::Result<std::optional<std::string>> ordered_next(const table::impl& t,
                                                                    std::string_view key);
// Up to limit live entries from lo (inclusive) to hi (exclusive; "" = no end).
[[nodiscard]] core::Result<std::vector<entry>> ordered_range(const table::impl& t,
                                                             std::string_view lo,
                                                             std::string_view hi,
                                                             std::size_t limit);

}  // namespace otpd::shm_table::detail

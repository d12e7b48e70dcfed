#pragma once

// A stripe's index, whichever the table type: the hash chains of a set
// (hash_index.hpp) or the skip list of an ordered_set (ordered_index.hpp).

#include <cstdint>
#include <string_view>

#include "hash_index.hpp"
#include "ordered_index.hpp"

namespace otpd::shm_table::detail {

// Stripe s's slot holding key (hash h), or nil. Lock-free; also used under
// the lock.
[[nodiscard]] inline std::uint32_t find(const table::impl& t, std::uint32_t s, std::uint64_t h,
                                        std::string_view key) {
  return t.type == table_type::ordered_set ? find_ordered(t, key, nullptr) : find_set(t, s, h, key);
}

}  // namespace otpd::shm_table::detail

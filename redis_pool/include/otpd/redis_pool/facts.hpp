#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/result.hpp>
#include <otpd/shm_table/persistent_term.hpp>

// A pool's facts in the node's persistent_term store (the analogue of the
// training's :persistent_term.put({RedisPool, :size}, n)): read by every
// caller without a lock or a syscall, written only when a worker starts.
//
//   "pool.<pool>.size"  -> "<N>"
//   "pool.<pool>.<i>"   -> "<registered name> <pid>"   (one per member)
//
// Each worker publishes its own entry at init, so a restarted worker updates
// its pid (the store's generation changes and clients refresh their cache).
// Names stay the same across restarts: a stale pid only costs a whereis().
// The store holds 64 terms of at most 64-byte keys: pools are small.
namespace otpd::redis_pool {

struct member {
  std::string name;  // empty until the member has published itself
  pid_t pid = 0;
};

struct pool_facts {
  unsigned size = 0;
  std::vector<member> members;  // size entries
  std::uint64_t generation = 0;
};

// The store of this node: $OTPD_NODE, else "default" (as shm_table).
[[nodiscard]] std::string default_node();
// The registered name of member index of pool: "<pool>.<index>".
[[nodiscard]] std::string member_name(std::string_view pool, unsigned index);
// Pool names: [A-Za-z0-9_-]{1,40} (the keys must stay under 64 bytes).
[[nodiscard]] bool valid_pool_name(std::string_view pool) noexcept;

// Publishes size and this member. Errors of the store (too_large, table_full)
// and errc::invalid_argument for a bad pool name or index >= size.
[[nodiscard]] core::Result<void> publish_member(shm_table::persistent_term& store,
                                                std::string_view pool, unsigned index,
                                                unsigned size, const member& m);
// The pool's facts; errc::not_found when no member ever published them.
[[nodiscard]] core::Result<pool_facts> read_facts(const shm_table::persistent_term& store,
                                                  std::string_view pool);
// Removes every fact of the pool (for a pool taken down for good).
void erase_facts(shm_table::persistent_term& store, std::string_view pool);

}  // namespace otpd::redis_pool

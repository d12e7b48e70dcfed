#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <otpd/core/result.hpp>
#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table {

// The shm terms cache: a public table created by its owner program
// (workers/shm_cache, shm_cache_owner) that sweeps expired entries; any
// process of the node puts and gets directly, without a message to the owner.
class cache_client {
 public:
  // Attaches the cache table; errc::not_found until the owner created it.
  [[nodiscard]] static Result<cache_client> attach(std::string_view node,
                                                   std::string_view name = "cache");

  [[nodiscard]] Result<void> put(std::string_view key, std::string_view value,
                                 std::chrono::milliseconds ttl = {}) {
    return table_.insert(key, value, ttl);
  }
  // Nothing for a missing or expired key.
  [[nodiscard]] std::optional<std::string> get(std::string_view key) const {
    return table_.lookup(key);
  }
  [[nodiscard]] Result<bool> del(std::string_view key) { return table_.erase(key); }
  [[nodiscard]] table& raw() noexcept { return table_; }

 private:
  explicit cache_client(table t) noexcept : table_(std::move(t)) {}
  table table_;
};

}  // namespace otpd::shm_table

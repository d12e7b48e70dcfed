#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <otpd/core/result.hpp>

namespace otpd::shm_table {

using core::Result;

// The node's persistent_term store: a tiny read-mostly key/value area in
// shared memory ("/dev/shm/otpd-pt.<node>.<name>", mode 0600). Reads take no
// lock and no syscall; a put copies the whole area (it is small) into the
// idle one of two buffers and publishes it with one atomic store, so a writer
// killed anywhere leaves the previous image in force. Writers serialize on a
// robust mutex. Used for facts such as the Redis pool's size and members.
class persistent_term {
 public:
  static constexpr std::size_t max_terms = 64;
  static constexpr std::size_t max_key_bytes = 64;
  static constexpr std::size_t max_value_bytes = 1024;

  // Attaches the area, creating it when missing. An existing segment must
  // be owned by this process's effective uid with mode 0600 (else
  // errc::access_denied) and have the area's exact size (else errc::corrupt).
  [[nodiscard]] static Result<persistent_term> open(std::string_view node,
                                                    std::string_view name = "terms");
  [[nodiscard]] static Result<void> remove(std::string_view node, std::string_view name = "terms");

  persistent_term(persistent_term&&) noexcept;
  persistent_term& operator=(persistent_term&&) noexcept;
  persistent_term(const persistent_term&) = delete;
  persistent_term& operator=(const persistent_term&) = delete;
  ~persistent_term();

  // errc::too_large for a key or value over its bound, errc::table_full past
  // max_terms, errc::corrupt when the current image is damaged (nothing is
  // published), errc::busy when the writers' lock stayed held past the wait bound.
  [[nodiscard]] Result<void> put(std::string_view key, std::string_view value);
  // Whether the key was there.
  [[nodiscard]] Result<bool> erase(std::string_view key);
  [[nodiscard]] std::optional<std::string> get(std::string_view key) const;
  [[nodiscard]] bool get_into(std::string_view key, std::string& out) const;
  // get_into with its failures told apart: errc::corrupt when the area is
  // damaged (a count or length out of bounds, or shrunk), errc::busy when the
  // current image stayed in flux past the wait bound (set_wait). get, get_into and
  // all answer "absent" / nothing in those cases.
  [[nodiscard]] Result<bool> get_checked(std::string_view key, std::string& out) const;
  // Checks the current image's counts and lengths; errc::corrupt with
  // *problem set when one is out of bounds.
  [[nodiscard]] Result<void> verify(std::string* problem = nullptr) const;
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> all() const;
  // How long, at most, a write waits for the writers' lock and a read for a
  // stable image (default 2 s; 1 ms to 1 h).
  void set_wait(std::chrono::milliseconds wait) noexcept;
  // Bumped by every put/erase: a reader may cache what it read until it changes.
  [[nodiscard]] std::uint64_t generation() const noexcept;

  struct impl;

 private:
  explicit persistent_term(std::unique_ptr<impl> p) noexcept;
  [[nodiscard]] static Result<void> bind(impl& p);
  std::unique_ptr<impl> impl_;
};

}  // namespace otpd::shm_table

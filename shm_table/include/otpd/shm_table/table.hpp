#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/result.hpp>

namespace otpd::shm_table {

using core::Result;

// ETS's two table types: a hash set and a set kept in key order (bytes,
// compared as unsigned, shorter first on a common prefix).
enum class table_type : std::uint8_t { set = 0, ordered_set = 1 };

// Who may write: protected = the owner process only (ETS protected), public =
// any process of the node. Readers are never restricted. The check is done by
// this library (every process of the node maps the segment read-write, so
// that any of them can repair a half-done write of a killed writer).
enum class access_mode : std::uint8_t { protected_table = 0, public_table = 1 };

// What a full table does with an insert of a new key: refuse it with
// errc::table_full, evict the least recently used entry, or evict the entry
// closest to its expiry (entries without a TTL are never evicted by it).
enum class eviction : std::uint8_t { none = 0, lru = 1, nearest_expiry = 2 };

[[nodiscard]] const char* to_string(table_type t) noexcept;
[[nodiscard]] const char* to_string(access_mode a) noexcept;
[[nodiscard]] const char* to_string(eviction e) noexcept;
[[nodiscard]] std::optional<table_type> table_type_from(std::string_view s) noexcept;
[[nodiscard]] std::optional<access_mode> access_mode_from(std::string_view s) noexcept;
[[nodiscard]] std::optional<eviction> eviction_from(std::string_view s) noexcept;

// Fixed at creation: the segment never grows. A set's slots are split among
// its stripes with some slack; max_entries and max_bytes are checked against
// the sum of the stripes' counters under the inserting stripe's lock, so
// inserts racing in different stripes at the very limit may each get in
// (beyond it by at most the number of concurrent writers). A stripe whose own
// slots run out evicts within itself or refuses with errc::table_full.
struct table_options {
  table_type type = table_type::set;
  access_mode access = access_mode::protected_table;
  eviction policy = eviction::none;
  std::uint32_t max_entries = 1024;
  // Bound on the bytes of all keys and values together; 0 means
  // max_entries * max_item_bytes (i.e. only the entry count binds).
  std::uint64_t max_bytes = 0;
  // Bound on one entry: key bytes + value bytes. Every entry takes one slot
  // of this size, so it also fixes the segment's size.
  std::uint32_t max_item_bytes = 256;
  // Lock stripes of a set (rounded to a power of two; 0 = automatic). An
  // ordered_set always has one stripe: a range scan needs one order.
  std::uint32_t stripes = 0;
};

// One entry copied out of the table.
struct entry {
  std::string key;
  std::string value;
  // Milliseconds left before expiry; nullopt when the entry has no TTL.
  std::optional<std::int64_t> ttl_left_ms;
};

struct table_info {
  std::string node;
  std::string name;
  table_type type = table_type::set;
  access_mode access = access_mode::protected_table;
  eviction policy = eviction::none;
  std::uint64_t size = 0;           // stored entries (expired ones until swept)
  std::uint64_t payload_bytes = 0;  // keys + values stored
  std::uint64_t memory = 0;         // bytes of the segment
  std::uint32_t max_entries = 0;
  std::uint64_t max_bytes = 0;
  std::uint32_t max_item_bytes = 0;
  std::uint32_t stripes = 0;
  pid_t owner = 0;
  bool owner_alive = false;
  std::uint64_t repairs = 0;  // half-done writes of killed processes rolled back, ever
};

// Key/value predicate of select and select_delete. It sees views into the
// table (select: into a consistent copy); it must not call the table.
using predicate = std::function<bool(std::string_view key, std::string_view value)>;

// A named table in POSIX shared memory ("/dev/shm/otpd.<node>.<name>", mode
// 0600). Every process that opens it maps the same segment: reads take no
// lock, writes take one robust lock stripe. A process killed anywhere, even
// inside a write, leaves the table consistent for the others (see the
// comment at the top of table.cpp). A table object is used by one thread at a
// time; other threads and processes open their own.
class table {
 public:
  // Creates a new table; errc::already_exists when the name is taken (by
  // anyone: an existing segment is never adopted here). Its memory is
  // reserved at once: on a /dev/shm too small the error (ENOSPC) says how
  // many bytes it needs and how many are free. The calling process becomes
  // the owner.
  [[nodiscard]] static Result<table> create(std::string_view node, std::string_view name,
                                            const table_options& options);
  // Attaches an existing table (errc::not_found when there is none). The
  // segment must be a regular file owned by this process's effective uid
  // with no group or other permission (else errc::access_denied), and its
  // header exactly one create() writes (else errc::corrupt; errc::malformed
  // for a layout of another build); the message names the segment and what
  // is wrong.
  [[nodiscard]] static Result<table> open(std::string_view node, std::string_view name);
  // Attaches the table, creating it with options when missing; *created
  // tells which. An existing table keeps its own options.
  [[nodiscard]] static Result<table> open_or_create(std::string_view node, std::string_view name,
                                                    const table_options& options,
                                                    bool* created = nullptr);
  // Orderly removal of the name: processes that still map it keep their
  // mapping until they close it; the next open gives not_found.
  [[nodiscard]] static Result<void> remove(std::string_view node, std::string_view name);

  table(table&&) noexcept;
  table& operator=(table&&) noexcept;
  table(const table&) = delete;
  table& operator=(const table&) = delete;
  ~table();

  // Makes the calling process the owner (a restarted owner re-attaching).
  // errc::busy while another live process owns it.
  [[nodiscard]] Result<void> adopt();
  [[nodiscard]] bool is_owner() const noexcept;

  // --- writes: errc::access_denied (protected, not the owner), errc::too_large
  // (key + value over max_item_bytes, or an empty key), errc::table_full,
  // errc::busy (the stripe stayed locked for all of the wait bound: see
  // set_wait), errc::corrupt (the segment breaks its own invariants: random
  // bytes written into it, or it was shrunk; nothing is changed).
  // A ttl of zero means no expiry. Success means the write is in the table
  // and survives any later crash of any process.
  [[nodiscard]] Result<void> insert(std::string_view key, std::string_view value,
                                    std::chrono::milliseconds ttl = {});
  // Inserts only when the key is absent (or expired): false when present.
  [[nodiscard]] Result<bool> insert_new(std::string_view key, std::string_view value,
                                        std::chrono::milliseconds ttl = {});
  // Whether the key was there (an expired entry counts as absent).
  [[nodiscard]] Result<bool> erase(std::string_view key);
  // Removes and returns the value (nullopt when absent).
  [[nodiscard]] Result<std::optional<std::string>> take(std::string_view key);
  // Adds incr to the 64-bit integer value (encode_int) and returns the new
  // value; a missing key starts from initial. errc::invalid_argument when the
  // value is not an 8-byte integer. The entry keeps its TTL; a new one gets ttl.
  [[nodiscard]] Result<std::int64_t> update_counter(std::string_view key, std::int64_t incr,
                                                    std::int64_t initial = 0,
                                                    std::chrono::milliseconds ttl = {});
  // Removes every live entry the predicate accepts; returns how many.
  [[nodiscard]] Result<std::size_t> select_delete(const predicate& pred);
  // Reclaims expired entries (the TTL sweep); returns how many.
  [[nodiscard]] Result<std::size_t> sweep();
  [[nodiscard]] Result<void> clear();

  // --- reads: lock-free, never blocked by a writer, never torn.
  [[nodiscard]] std::optional<std::string> lookup(std::string_view key) const;
  // The same into a caller's buffer (no allocation once it has grown); out
  // is unspecified when it returns false.
  [[nodiscard]] bool lookup_into(std::string_view key, std::string& out) const;
  // lookup_into with its failures told apart: true / false (found or not),
  // errc::busy when a write held the key's stripe for all of the wait bound
  // (set_wait: a writer stopped by SIGSTOP, say), errc::corrupt when the
  // segment is damaged. lookup, lookup_into, member, select and fold answer
  // "absent" (or skip the stripe) in those cases; they never block longer.
  [[nodiscard]] Result<bool> lookup_checked(std::string_view key, std::string& out) const;
  // Many lookups in one call (the table's MGET): out[i] receives keys[i]'s
  // value and found[i] whether it was there; returns how many were. The
  // batch's memory accesses are issued together, stage by stage, so a batch
  // of keys costs little more than its slowest lookup; each key has the
  // guarantees of lookup_into (out[i] is unspecified when found[i] is
  // false). errc::invalid_argument when out or found is shorter than keys.
  [[nodiscard]] Result<std::size_t> lookup_many(std::span<const std::string_view> keys,
                                                std::span<std::string> out,
                                                std::span<bool> found) const;
  [[nodiscard]] bool member(std::string_view key) const;
  // Live entries the predicate accepts (ordered_set: in key order).
  [[nodiscard]] std::vector<entry> select(const predicate& pred) const;
  // Calls fn on every live entry (a consistent copy of each stripe).
  void fold(const std::function<void(const entry&)>& fn) const;

  // --- ordered_set only (errc::invalid_argument on a set).
  [[nodiscard]] Result<std::optional<std::string>> first() const;
  [[nodiscard]] Result<std::optional<std::string>> last() const;
  // The smallest key strictly greater than key.
  [[nodiscard]] Result<std::optional<std::string>> next(std::string_view key) const;
  // Live entries with lo <= key < hi (an empty hi: no upper bound), at most limit.
  [[nodiscard]] Result<std::vector<entry>> range(std::string_view lo, std::string_view hi,
                                                 std::size_t limit = SIZE_MAX) const;

  // Stored entries, including expired ones not yet swept.
  [[nodiscard]] std::uint64_t size() const noexcept;
  // Bytes of the segment.
  [[nodiscard]] std::uint64_t memory() const noexcept;
  [[nodiscard]] table_info info() const;
  // Locks each stripe in turn (repairing it when a writer died there) and
  // checks every invariant; errc::corrupt with *problem set when one fails
  // (errc::busy when a stripe stayed locked for all of the wait bound).
  [[nodiscard]] Result<void> verify(std::string* problem = nullptr) const;

  // Repairs done by this process (half-done writes of dead processes).
  [[nodiscard]] std::uint64_t repairs() const noexcept;

  // How long, at most, a write waits for its stripe's lock and a read for a
  // write in flight to end (default 2 s; 1 ms to 1 h). Past it the call
  // answers errc::busy while a live process holds the stripe, errc::corrupt
  // when the lock word is garbage nobody will release.
  void set_wait(std::chrono::milliseconds wait) noexcept;

  struct impl;

 private:
  explicit table(std::unique_ptr<impl> p) noexcept;
  std::unique_ptr<impl> impl_;
};

// Bytes of /dev/shm a table created with o takes (its segment's size).
[[nodiscard]] std::uint64_t segment_bytes(const table_options& o);

// --- the node's tables

// The node name: $OTPD_NODE, else "default". Names are [A-Za-z0-9_-]
// (tables may also use '.'), at most 64 bytes.
[[nodiscard]] std::string default_node();
[[nodiscard]] bool valid_node_name(std::string_view node) noexcept;
[[nodiscard]] bool valid_table_name(std::string_view name) noexcept;
// "otpd.<node>.<name>": the segment's name (a file under /dev/shm).
[[nodiscard]] std::string segment_name(std::string_view node, std::string_view name);

// Names of the node's tables (segments under /dev/shm).
[[nodiscard]] std::vector<std::string> list_tables(std::string_view node);
// Removes the node's segments that cannot be attached: a creator killed
// before the table was ready, or a layout of another version. Readable
// tables are kept for their owner to re-adopt. Returns the names removed.
[[nodiscard]] std::vector<std::string> remove_stale(std::string_view node);
// Orderly node shutdown: removes every table (and persistent_term area) of the node.
[[nodiscard]] std::size_t remove_all(std::string_view node);

}  // namespace otpd::shm_table

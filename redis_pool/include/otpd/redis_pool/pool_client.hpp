#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/clock.hpp>
#include <otpd/core/result.hpp>
#include <otpd/redis_client/reply.hpp>
#include <otpd/redis_pool/facts.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/shm_table/persistent_term.hpp>

namespace otpd::redis_pool {

// How command() picks a worker.
enum class strategy : std::uint8_t {
  random,             // uniform, as the training's RedisPool
  round_robin,        // each in turn
  least_outstanding,  // the member with the fewest of *this client's* calls in flight
};
[[nodiscard]] const char* to_string(strategy s) noexcept;
[[nodiscard]] std::optional<strategy> strategy_from(std::string_view s) noexcept;

struct pool_options {
  std::string pool = "redis";
  std::string node;  // persistent_term store; empty: default_node()
  // Used when the store holds no facts for the pool (members "<pool>.<i>").
  // When 0 as well, the members are the names "<pool>.0", "<pool>.1"... found
  // registered in the runtime dir (the first missing index ends the list).
  unsigned size_if_unpublished = 0;
  redis_pool::strategy strategy = strategy::random;
  std::chrono::milliseconds timeout{2000};  // per call, from send to reply
};

// The caller's side of a pool, in this process (not thread-safe, like the
// runtime it uses: one per process or per thread that owns the mailbox).
//
// Errors of command() / await(), all values:
// - errc::crashed: the worker died with the call in flight (the monitor's
//   DOWN answers it at once; the worker's restart is otpd's business), or
//   errc::noproc: no worker under that name right now;
// - errc::timeout: no answer within options.timeout (a late reply is dropped);
// - what the worker says: errc::disconnected (Redis is unreachable: fails
//   fast), errc::timeout (Redis did not answer in time), errc::busy,
//   errc::shutting_down (the worker is stopping), errc::malformed.
// A Redis error reply (WRONGTYPE...) is a reply of type error, not an error.
//
// Workers are addressed by pid, cached from the pool's facts; the cache is
// refreshed when the facts change (a worker restarted and republished) or a
// call finds a pid dead, so a restarted worker serves again with no change
// on the client side.
class pool_client {
 public:
  // One call in flight.
  struct pending {
    runtime::request_id id;
    unsigned member = 0;
    core::deadline until = core::deadline::never();
  };

  // Reads the pool's facts; errc::not_found when nothing is published,
  // size_if_unpublished is 0 and no "<pool>.0" is registered;
  // errc::invalid_argument for a bad pool name.
  [[nodiscard]] static core::Result<pool_client> open(const pool_options& options);

  pool_client(pool_client&&) noexcept = default;
  pool_client& operator=(pool_client&&) noexcept = default;
  pool_client(const pool_client&) = delete;
  pool_client& operator=(const pool_client&) = delete;
  ~pool_client() = default;

  // One command through a worker picked by the strategy; waits for its reply.
  [[nodiscard]] redis_client::reply_result command(const std::vector<std::string>& argv);
  [[nodiscard]] redis_client::reply_result command_on(unsigned member,
                                                      const std::vector<std::string>& argv);

  // Pipelined API: send() queues the call (it goes out batched, at the
  // latest when this process waits), await() collects its reply. Many may be
  // in flight, to one or several workers; await them in any order.
  [[nodiscard]] core::Result<pending> send(const std::vector<std::string>& argv);
  [[nodiscard]] core::Result<pending> send_to(unsigned member,
                                              const std::vector<std::string>& argv);
  [[nodiscard]] redis_client::reply_result await(const pending& p);
  // Waits for whichever of ps answers first; returns its index in ps and sets
  // *result. errc::timeout when none answers before until. The answered
  // request must not be awaited again.
  [[nodiscard]] core::Result<std::size_t> await_any(const std::vector<pending>& ps,
                                                    core::deadline until,
                                                    redis_client::reply_result* result);
  // Sends every command (spread by the strategy), then collects the replies,
  // in order.
  [[nodiscard]] std::vector<redis_client::reply_result> pipeline(
      const std::vector<std::vector<std::string>>& commands);

  [[nodiscard]] unsigned size() const noexcept { return static_cast<unsigned>(members_.size()); }
  [[nodiscard]] const std::vector<member>& members() const noexcept { return members_; }
  [[nodiscard]] std::size_t outstanding(unsigned member) const { return outstanding_[member]; }
  [[nodiscard]] const pool_options& options() const noexcept { return o_; }
  // The member the next command would use (advances round-robin state).
  [[nodiscard]] unsigned pick();

 private:
  pool_client() = default;
  void refresh();
  core::Result<pid_t> pid_of(unsigned member);
  redis_client::reply_result finish(const pending& p, core::Result<runtime::message> m);

  pool_options o_;
  std::optional<shm_table::persistent_term> store_;
  std::uint64_t generation_ = 0;
  std::vector<member> members_;
  std::vector<std::size_t> outstanding_;
  unsigned next_ = 0;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace otpd::redis_pool

#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <otpd/core/result.hpp>
#include <otpd/redis_client/reply.hpp>

// The wire format between pool clients and redis workers, defined once here.
//
// Request body (a GenServer call to a worker): a msgpack array of the Redis
// argv, each element a msgpack bin (str is accepted too), binary-safe:
//   ["SET", "k", "v"]
//
// Reply body: a msgpack array whose first element is a tag (the numbers are
// on the wire: never renumber them):
//   [0, bin]        status reply    (+OK)
//   [1, bin]        error reply     (-ERR ...): a Redis answer, not a failure
//   [2, int64]      integer reply   (:3)
//   [3, bin]        bulk string     ($...), binary-safe
//   [4]             nil             ($-1 / *-1)
//   [5, [reply...]] array           (*...), elements encoded the same way
//   [6, int, str]   no reply: the worker could not get one (otpd::core::errc
//                   value, e.g. disconnected / timeout / busy / shutting_down,
//                   and a text for logs)
// Nesting is bounded by max_depth on decode.
namespace otpd::redis_pool {

inline constexpr int max_depth = 64;

[[nodiscard]] std::string encode_request(const std::vector<std::string>& argv);
[[nodiscard]] std::string encode_request(const std::vector<std::string_view>& argv);
// errc::malformed for anything but a non-empty array of str/bin.
[[nodiscard]] core::Result<std::vector<std::string>> decode_request(std::string_view body);

[[nodiscard]] std::string encode_reply(const redis_client::reply& r);
// A failure (tag 6) carrying ec; only otpd::core::errc codes travel as such,
// other categories (system errors) arrive as errc::disconnected.
[[nodiscard]] std::string encode_failure(std::error_code ec);
// Either of the above from a reply_result.
[[nodiscard]] std::string encode_result(const redis_client::reply_result& r);
// The reply, or the failure it carries, or errc::malformed.
[[nodiscard]] redis_client::reply_result decode_reply(std::string_view body);

}  // namespace otpd::redis_pool

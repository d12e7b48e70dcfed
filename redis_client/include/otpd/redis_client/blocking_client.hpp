#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include <otpd/core/result.hpp>
#include <otpd/redis_client/endpoint.hpp>
#include <otpd/redis_client/reply.hpp>

struct redisContext;

namespace otpd::redis_client {

// A blocking client on hiredis' synchronous context: one connection, one
// caller at a time. Errors are values: a Redis error reply is a reply of type
// error; a connection error, a timeout or a protocol error is the Result's
// error_code (see reply_result). After a connection-level error the client is
// broken for good (a late reply could be mistaken for the next command's) and
// every later call returns errc::disconnected; connect a new one.
class blocking_client {
 public:
  struct options {
    std::chrono::milliseconds connect_timeout{1000};
    // Bound on each read and write of a command (SO_RCVTIMEO/SO_SNDTIMEO
    // through redisSetTimeout); zero waits forever.
    std::chrono::milliseconds command_timeout{0};
  };

  // Connects within options.connect_timeout. Errors: the system error of
  // connect(2) (e.g. ECONNREFUSED, ENOENT for a missing socket path),
  // errc::timeout, errc::invalid_argument for a host that does not resolve.
  [[nodiscard]] static core::Result<blocking_client> connect(const endpoint& where,
                                                             const options& opts);
  [[nodiscard]] static core::Result<blocking_client> connect(const endpoint& where) {
    return connect(where, options{});
  }

  blocking_client() noexcept = default;
  blocking_client(blocking_client&& other) noexcept;
  blocking_client& operator=(blocking_client&& other) noexcept;
  blocking_client(const blocking_client&) = delete;
  blocking_client& operator=(const blocking_client&) = delete;
  ~blocking_client();

  // Sends one command and waits for its reply.
  [[nodiscard]] reply_result command(command_args args);

  // Pipelining: append() queues a command in the output buffer (nothing is
  // sent yet); get_reply() flushes the buffer and reads the next reply, in
  // the order the commands were appended.
  [[nodiscard]] core::Result<void> append(command_args args);
  [[nodiscard]] reply_result get_reply();
  // Appends every command, then reads all replies, in order. Stops at the
  // first connection-level error.
  [[nodiscard]] core::Result<std::vector<reply>> pipeline(
      const std::vector<std::vector<std::string>>& commands);

  // Changes the per-command timeout (zero: none).
  [[nodiscard]] core::Result<void> set_timeout(std::chrono::milliseconds timeout);

  [[nodiscard]] bool connected() const noexcept;
  // hiredis' description of the last connection-level error, for log lines.
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }
  [[nodiscard]] int fd() const noexcept;

 private:
  explicit blocking_client(redisContext* ctx) noexcept : ctx_(ctx) {}
  std::error_code fail(int saved_errno);

  redisContext* ctx_ = nullptr;  // owned; freed by redisFree
  bool broken_ = false;
  std::string last_error_;
};

}  // namespace otpd::redis_client

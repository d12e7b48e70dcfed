#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <system_error>

#include <otpd/redis_client/endpoint.hpp>
#include <otpd/redis_client/reply.hpp>

namespace otpd::redis_client {

namespace detail {
class async_session;
}

// One connection to Redis on a libuv loop, through hiredis' async context and
// its libuv adapter. Non-blocking and pipelined: many requests in flight,
// replies delivered in order.
//
// Contract:
// - Every request is answered exactly once, from the loop (never from inside
//   command()): with its reply, errc::timeout when its deadline passes first,
//   errc::disconnected when the connection fails or drops with it in flight,
//   or errc::shutting_down when the client is destroyed first.
// - A request that timed out stays in the pipeline (Redis answers in order);
//   its late reply is read and dropped, and the connection stays usable.
// - on_connect runs once (unless the client is destroyed first): an empty
//   error_code when the connection is up, else why it failed (a system error
//   such as ECONNREFUSED, or errc::timeout after options.connect_timeout).
//   on_disconnect runs at most once, only after a successful on_connect, when
//   the server closes the connection or an I/O error ends it. Handlers run
//   from the loop, so a handler may destroy the client.
// - Host names are resolved by hiredis with a blocking getaddrinfo(): give
//   numeric addresses (or a Unix socket path) to keep the loop responsive.
// - One connection per object: after a failure or a drop it stays dead and
//   answers every new request with errc::disconnected. Reconnecting is the
//   job of `connection`, which builds a fresh client for each attempt.
// - Destroying the client (even inside one of its callbacks) answers every
//   request still owed with errc::shutting_down before the destructor returns;
//   hiredis' context and the uv handles are released later, from the loop,
//   so run the loop until it has no handles left before uv_loop_close().
//   Commands may be sent while connecting: hiredis buffers them.
class async_client {
 public:
  struct options {
    std::chrono::milliseconds connect_timeout{1000};  // zero: no bound
    std::chrono::milliseconds request_timeout{1000};  // default deadline; zero: none
    // Bound on the pipeline: requests sent and not yet read back, timed-out
    // ones included (their replies are still owed by the server). Beyond it
    // a request is not sent and is answered errc::busy. Zero: no bound.
    std::size_t max_in_flight = 0;
  };
  struct handlers {
    std::function<void(std::error_code)> on_connect;
    std::function<void(std::error_code)> on_disconnect;
  };

  // Starts connecting; never fails synchronously (errors reach on_connect).
  [[nodiscard]] static async_client connect(uv_loop_t* loop, const endpoint& where,
                                            const options& opts, handlers h = {});

  async_client() noexcept = default;
  async_client(async_client&& other) noexcept;
  async_client& operator=(async_client&& other) noexcept;
  async_client(const async_client&) = delete;
  async_client& operator=(const async_client&) = delete;
  ~async_client();

  // Sends a command with the default deadline (options.request_timeout).
  // The one exception to "answered from the loop": on a default-constructed
  // or closed client there is no loop, and cb gets errc::disconnected inside
  // the call.
  void command(command_args args, reply_callback cb);
  // Sends a command with its own deadline (zero: none).
  void command(command_args args, std::chrono::milliseconds timeout, reply_callback cb);

  [[nodiscard]] bool valid() const noexcept { return s_ != nullptr; }
  [[nodiscard]] bool connected() const noexcept;
  // Requests sent and not answered yet (timed-out ones no longer count).
  [[nodiscard]] std::size_t in_flight() const noexcept;
  // hiredis' description of the last connection error, for log lines.
  [[nodiscard]] std::string last_error() const;
  // The same as destroying the client.
  void close() noexcept;

 private:
  detail::async_session* s_ = nullptr;  // owned until close(); then it frees itself
};

}  // namespace otpd::redis_client

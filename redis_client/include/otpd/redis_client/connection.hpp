#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>

#include <otpd/redis_client/async_client.hpp>
#include <otpd/redis_client/endpoint.hpp>
#include <otpd/redis_client/reply.hpp>

namespace otpd::redis_client {

namespace detail {
class connection_core;
}

// The states of a connection, in the spirit of a gen_statem client.
enum class connection_state : std::uint8_t { disconnected, connecting, connected };
[[nodiscard]] const char* to_string(connection_state s) noexcept;

// Exponential backoff with jitter: base * 2^attempt, capped at cap, minus a
// random share of it: the result lies in [d * (1 - jitter), d]. `unit` is a
// uniform random number in [0, 1) (the caller's generator, so tests can pin it).
[[nodiscard]] std::chrono::milliseconds backoff_delay(std::chrono::milliseconds base,
                                                      std::chrono::milliseconds cap,
                                                      unsigned attempt, double jitter,
                                                      double unit) noexcept;

// A reconnecting Redis connection on a libuv loop: a state machine with
// explicit states and events, one fresh async_client (a fresh hiredis
// context) per connect attempt.
//
//   disconnected --start / retry timer--> connecting
//   connecting --TCP up, AUTH/SELECT accepted, PING answered--> connected
//   connecting --refused / error / connect timeout--> disconnected (retry after backoff)
//   connected --server closed / I/O error--> disconnected (retry after backoff)
//   any --stop()--> disconnected (no retry until start())
//
// Requests:
// - connected: sent at once, pipelined, each with its deadline; when the
//   connection drops, every request in flight gets errc::disconnected.
// - otherwise: fail fast with errc::disconnected (the default), or, with
//   queue_while_disconnected, wait in a bounded FIFO queue (errc::busy when
//   full) until connected, or errc::timeout when their deadline passes first
//   (before start() and after stop(), requests always fail fast).
// - A server that stops answering without closing (SIGSTOP, a hung host)
//   does not drop the connection: requests time out on their deadlines and
//   the connection serves again when the server does (max_in_flight bounds
//   the replies owed meanwhile).
// Every request is answered exactly once, always from the loop, never from
// inside command(). State changes go to the state callback and the log.
//
// Destroying the connection (also inside its own callbacks) answers every
// request still owed with errc::shutting_down before the destructor returns;
// its uv handles are freed later by the loop (run it before uv_loop_close()).
class connection {
 public:
  struct options {
    endpoint where;
    std::string name = "redis";                       // in log lines
    std::chrono::milliseconds connect_timeout{1000};  // TCP connect plus the PING
    std::chrono::milliseconds request_timeout{1000};  // default deadline; zero: none
    std::chrono::milliseconds backoff_base{50};
    std::chrono::milliseconds backoff_cap{5000};
    double backoff_jitter = 0.5;    // share of each delay taken off at random, in [0, 1]
    std::size_t max_in_flight = 0;  // see async_client::options; zero: no bound
    bool queue_while_disconnected = false;
    std::size_t max_queue = 1024;
    // Connected means Redis answered PING, not only that TCP is up (a
    // stopped server still completes the TCP handshake in the kernel).
    bool ping_on_connect = true;
    // Sent on every connect, before the PING: AUTH <password> when not
    // empty, SELECT <database> when not 0. A refusal fails the attempt.
    std::string password;
    int database = 0;
    std::uint64_t seed = 0;  // jitter generator seed; 0: random
  };

  struct transition {
    connection_state from;
    connection_state to;
    std::error_code reason;              // why (empty for start and successful connects)
    std::chrono::milliseconds retry_in;  // when entering disconnected with a retry planned
    unsigned attempt;                    // consecutive failed attempts so far
  };
  using state_callback = std::function<void(const transition&)>;

  connection(uv_loop_t* loop, options opts, state_callback on_state = {});
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  connection(connection&& other) noexcept;
  connection& operator=(connection&& other) noexcept;
  ~connection();

  // Starts connecting (and reconnecting after every failure).
  void start();
  // Disconnects and stops reconnecting. Requests in flight and queued ones
  // get errc::shutting_down (from the loop).
  void stop();

  void command(command_args args, reply_callback cb);
  void command(command_args args, std::chrono::milliseconds timeout, reply_callback cb);

  [[nodiscard]] connection_state state() const noexcept;
  [[nodiscard]] std::size_t queued() const noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept;
  // Connect attempts made since construction, and successful connects.
  [[nodiscard]] std::uint64_t attempts() const noexcept;
  [[nodiscard]] std::uint64_t connects() const noexcept;

 private:
  detail::connection_core* c_ = nullptr;  // frees itself after its handles close
};

}  // namespace otpd::redis_client

#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include <otpd/redis_client/endpoint.hpp>

// The redis worker: one process, one libuv loop, one reconnecting Redis
// connection, serving Redis commands that arrive as GenServer calls (request
// and reply bodies: see codec.hpp).
//
// - Pipelined: every call is sent to Redis as soon as it is read from the
//   mailbox, many in flight; each is answered (a deferred reply) as Redis
//   answers it, so in the order the calls arrived. Replies of one loop turn
//   go out batched (post + one flush per caller before the loop polls).
// - Readiness: by default the worker reports ready as soon as its mailbox is
//   up and its membership is published, and requests fail fast with
//   errc::disconnected while Redis is unreachable (the pool starts, and its
//   callers get an error at once, not a hang). With wait_connected it
//   reports ready only after the first successful connect (PING answered),
//   and calls that arrive before it wait in the mailbox (bounded by their
//   callers' timeouts); later disconnections fail fast as above.
// - Every call is answered exactly once: the reply, or a failure tag with
//   errc::disconnected / timeout / busy / shutting_down / malformed.
// - SIGTERM, SIGINT or a stop request (stop_server) stop it in order: new
//   calls are answered shutting_down, calls in flight get their replies (for
//   at most request_timeout), then the connection closes and the process
//   exits 0.
// - health_interval: a PING on a connection idle that long (zero: none), so
//   a silent server or a dead NAT entry is noticed before a caller does.
namespace otpd::redis_pool {

struct worker_options {
  redis_client::endpoint where;
  std::string pool = "redis";
  unsigned index = 0;
  unsigned size = 1;
  std::string node;  // persistent_term store; empty: default_node()
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{1000};
  std::chrono::milliseconds health_interval{0};
  std::chrono::milliseconds backoff_base{50};
  std::chrono::milliseconds backoff_cap{2000};
  std::size_t max_in_flight = 0;  // zero: no bound (beyond it: errc::busy)
  // Poll without sleeping this long after the last request or reply (a
  // sleeping vCPU wakes slowly here); zero: always block in epoll.
  std::chrono::microseconds spin{0};
  bool wait_connected = false;
  std::string password;
  int database = 0;
};

// Runs the worker in this process until it is stopped; returns the exit code
// for main(): 0 after an orderly stop, 111 when the mailbox cannot open.
int run_worker(const worker_options& options);

}  // namespace otpd::redis_pool

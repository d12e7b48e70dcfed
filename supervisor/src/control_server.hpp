#pragma once

// The control socket's transport: a Unix socket (0600, same user or root
// only) carrying newline-delimited JSON, one request per line and replies in
// request order. What the requests mean is control_handler's and the
// daemon's business; this unit accepts, frames, bounds and answers them.
//
// What one local client can cost otpd is bounded (docs/SECURITY.md):
//  - connections: max_connections long-lived ones (subscribers, monitors,
//    idle clients), plus a reserve of one-shot ones for the short
//    request/reply clients (otpctl, the runtime's exit-reason query at a
//    DOWN). A connection accepted while the cap is full lands in the reserve:
//    it gets one reply and is closed; if it sends nothing within
//    one_shot_grace_ms, or asks to subscribe or monitor, it gets an error and
//    is closed. When the reserve is full too, its oldest connection that has
//    sent nothing is closed to make room, so a client that holds
//    connections open can keep neither otpctl nor a DOWN's reason out.
//  - memory: a request line is at most max_request_bytes; a connection's
//    unsent output at most max_queue_bytes: past it otpd stops reading that
//    connection's requests until the client has read its replies
//    (backpressure), and an event subscriber is closed.
//  - time: a connection with no request for idle_timeout (and no
//    subscription or monitor) is closed.
// Refusals and closings are logged, at most one line a second.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include <otpd/core/unique_fd.hpp>
#include <otpd/supervisor/control_handler.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::supervisor {

class control_server;

// One client connection.
struct control_conn {
  control_peer peer;
  control_server* owner = nullptr;
  uv::handle<uv_pipe_t> pipe;
  std::string in;                // bytes read and not handled yet
  std::int64_t accepted_ms = 0;  // loop time
  std::int64_t active_ms = 0;    // the last request (or the accept)
  std::int64_t finish_ms = 0;    // when its last reply was queued (finishing)
  bool reading = false;          // uv_read_start'ed; off while the queue is full
  bool answered = false;         // a one-shot connection got its reply
  bool finishing = false;        // closed once its queued output is written
  bool eof = false;              // the client has shut down its side
};

// The limits a node's config sets (node.control in otpd.yaml(5)).
struct control_limits {
  std::size_t max_connections = 64;
  std::int64_t idle_timeout_ms = 60000;
};

class control_server {
 public:
  // Answers one request line: the reply, or null for none (see
  // answer_control_request). Must not throw.
  using request_handler = std::function<nlohmann::json(control_peer&, std::string_view)>;

  // after_request runs after each request line, answered or not (the
  // daemon runs the tree's queued actions there).
  control_server(uv_loop_t* loop, request_handler on_request, std::function<void()> after_request)
      : loop_(loop), on_request_(std::move(on_request)), after_request_(std::move(after_request)) {}
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;
  control_server(control_server&&) = delete;
  control_server& operator=(control_server&&) = delete;
  ~control_server() = default;

  // Listens on path, replacing a stale socket there (the caller holds the
  // runtime dir's lock). Logs why and returns false when it cannot.
  [[nodiscard]] bool listen(const std::string& path);
  // New limits (at start and at a reload); connections already open keep
  // their slot.
  void set_limits(const control_limits& l) { limits_ = l; }
  // Queues one JSON line to connection id if it is still open (a failed
  // write is dropped: the read side sees the disconnect).
  void send_to(std::uint64_t id, const nlohmann::json& j);
  // send_to every event subscriber; one whose unsent output is over
  // max_queue_bytes is closed instead.
  void broadcast(const nlohmann::json& j);
  // The peer of connection id, or null when it is closed.
  [[nodiscard]] control_peer* peer(std::uint64_t id);
  // Closes connection id (pending writes are cancelled by libuv).
  void close(std::uint64_t id);
  // Closes every connection, then the listening socket.
  void close_all();
  // Bytes queued on connection id and not written yet (0 when it is
  // closed): a reexec lets its reply leave before the exec closes it.
  [[nodiscard]] std::size_t queued_for(std::uint64_t id) const;

  static constexpr std::size_t reserve_connections = 16;
  static constexpr std::int64_t one_shot_grace_ms = 2000;
  static constexpr std::size_t max_request_bytes = 64 << 10;
  static constexpr std::size_t max_queue_bytes = 256 << 10;
  static constexpr std::int64_t accept_pause_ms = 100;
  static constexpr int accept_burst = 64;

 private:
  void watch_listener();
  void pause_listener();
  void on_acceptable();
  void on_connection(core::unique_fd fd);
  std::size_t close_hung_up();
  void admit(std::unique_ptr<control_conn> c);
  void start_reading(control_conn& c);
  void on_read(control_conn& c, ssize_t n, const uv_buf_t* buf);
  void process(control_conn& c);
  bool handle_request(control_conn& c, std::string_view line);
  void send(control_conn& c, const nlohmann::json& j);
  void on_written(std::uint64_t id);
  void finish(control_conn& c);
  void refuse(control_conn& c, const std::string& why);
  void sweep();
  void arm_sweep();
  [[nodiscard]] std::size_t queued(const control_conn& c) const;
  [[nodiscard]] std::int64_t now_ms() const;
  void warn_limited(const std::string& text);

  uv_loop_t* loop_;
  request_handler on_request_;
  std::function<void()> after_request_;
  control_limits limits_;
  core::unique_fd listen_fd_;
  uv::handle<uv_poll_t> listener_;  // watches listen_fd_
  uv::handle<uv_timer_t> pause_timer_;
  core::unique_fd spare_fd_;  // closed to accept-and-refuse when out of fds
  uv::handle<uv_timer_t> sweep_timer_;
  std::unordered_map<std::uint64_t, std::unique_ptr<control_conn>> conns_;
  // Closed connections, freed at the next entry from the loop: a request's
  // handler may close its own connection (a broadcast to a slow subscriber)
  // while that connection's code is still on the stack.
  std::vector<std::unique_ptr<control_conn>> closed_;
  std::uint64_t next_conn_ = 1;
  std::int64_t last_warn_ms_ = -1000000;
  std::uint64_t warns_suppressed_ = 0;
};

}  // namespace otpd::supervisor

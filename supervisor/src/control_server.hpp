#pragma once

// The control socket's transport: a Unix socket (0600, same user or root
// only) carrying newline-delimited JSON, one request per line and replies in
// request order. What the requests mean is the daemon's business (its
// command table); this unit frames, bounds and answers them.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include <otpd/uv/handle.hpp>

namespace otpd::supervisor {

class control_server;

// One client connection. id 0 is no connection at all: a request made by
// the daemon itself (SIGHUP's reload), which gets no reply and cannot
// subscribe or monitor.
struct control_conn {
  std::uint64_t id = 0;
  control_server* owner = nullptr;
  uv::handle<uv_pipe_t> pipe;
  std::string in;       // bytes read and not yet a full line
  bool events = false;  // subscribed to the event stream
  bool closing = false;
};

class control_server {
 public:
  // Answers one well-formed request ({"cmd": "<string>", ...}): the reply,
  // or null for none. May throw; the client then gets an error reply.
  using request_handler = std::function<nlohmann::json(control_conn&, const nlohmann::json&)>;

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
  // Queues one JSON line to c; a failed write is dropped (the read side
  // sees the disconnect).
  void send(control_conn& c, const nlohmann::json& j);
  // send() to connection id if it is still open.
  void send_to(std::uint64_t id, const nlohmann::json& j);
  // send() to every event subscriber; one whose unread backlog is over
  // max_subscriber_backlog is closed instead.
  void broadcast(const nlohmann::json& j);
  // Closes connection id (pending writes are cancelled by libuv).
  void close(std::uint64_t id);
  // Closes every connection, then the listening socket.
  void close_all();

  static constexpr std::size_t max_request_bytes = 1 << 20;
  static constexpr std::size_t max_subscriber_backlog = 8 << 20;

 private:
  void on_connection();
  void on_read(control_conn& c, ssize_t n, const uv_buf_t* buf);
  void handle_request(control_conn& c, const std::string& line);

  uv_loop_t* loop_;
  request_handler on_request_;
  std::function<void()> after_request_;
  uv::handle<uv_pipe_t> listener_;
  std::unordered_map<std::uint64_t, std::unique_ptr<control_conn>> conns_;
  std::uint64_t next_conn_ = 1;
};

}  // namespace otpd::supervisor

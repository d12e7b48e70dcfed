#include "control_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <exception>
#include <utility>
#include <vector>

#include <otpd/core/log.hpp>
#include <otpd/protocol/control.hpp>

namespace otpd::supervisor {

using json = nlohmann::json;

bool control_server::listen(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    core::log_error("otpd: control socket path too long: {}; exiting", path);
    return false;
  }
  ::unlink(path.c_str());  // stale from a dead otpd: we hold the lock
  listener_ = uv::handle<uv_pipe_t>::make();
  uv_pipe_init(loop_, listener_.get(), 0);
  listener_.get()->data = this;
  // Created 0600 from the start: no window where another user could connect.
  mode_t old = ::umask(0177);
  int rc = uv_pipe_bind(listener_.get(), path.c_str());
  ::umask(old);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_.get()), 128,
                   [](uv_stream_t* s, int status) {
                     if (status == 0) {
                       static_cast<control_server*>(s->data)->on_connection();
                     }
                   });
  }
  if (rc != 0) {
    core::log_error("otpd: unable to listen on {}: {}; exiting", path, uv_strerror(rc));
    return false;
  }
  return true;
}

void control_server::on_connection() {
  auto c = std::make_unique<control_conn>();
  c->id = next_conn_++;
  c->owner = this;
  c->pipe = uv::handle<uv_pipe_t>::make();
  uv_pipe_init(loop_, c->pipe.get(), 0);
  auto* stream = reinterpret_cast<uv_stream_t*>(c->pipe.get());
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_.get()), stream) != 0) {
    return;
  }
  // Same user or root only: the socket mode already says so, this makes sure.
  uv_os_fd_t fd;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream), &fd) != 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != ::geteuid() && cred.uid != 0)) {
    core::log_warn("otpd: refusing control connection from uid {}", cred.uid);
    return;
  }
  // The connection outlives no callback of its pipe: closing the pipe (in
  // close()) stops its reads before the connection is freed.
  c->pipe.get()->data = c.get();
  uv_read_start(
      stream,
      [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        static char slab[65536];
        buf->base = slab;
        buf->len = sizeof slab;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* conn = static_cast<control_conn*>(s->data);
        conn->owner->on_read(*conn, n, buf);
      });
  conns_[c->id] = std::move(c);
}

void control_server::close(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  conns_.erase(it);  // closes the pipe handle; pending writes are cancelled by libuv
}

void control_server::close_all() {
  conns_.clear();
  listener_.reset();
}

void control_server::on_read(control_conn& c, ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    close(c.id);
    return;
  }
  c.in.append(buf->base, static_cast<std::size_t>(n));
  std::size_t start = 0;
  std::uint64_t id = c.id;
  for (;;) {
    auto nl = c.in.find('\n', start);
    if (nl == std::string::npos) {
      break;
    }
    std::string line = c.in.substr(start, nl - start);
    start = nl + 1;
    handle_request(c, line);
    if (conns_.count(id) == 0) {
      return;  // the request closed this connection (c is gone)
    }
  }
  c.in.erase(0, start);
  if (c.in.size() > max_request_bytes) {
    core::log_warn("otpd: control request over {} bytes; closing that connection",
                   max_request_bytes);
    close(c.id);
  }
}

namespace {

struct write_req {
  uv_write_t req;
  std::string data;
};

}  // namespace

void control_server::send(control_conn& c, const json& j) {
  auto w = std::make_unique<write_req>();
  w->data = j.dump() + "\n";
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  w->req.data = w.get();
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(c.pipe.get()), &b, 1,
                    [](uv_write_t* req, int) {
                      std::unique_ptr<write_req> done(static_cast<write_req*>(req->data));
                    });
  if (rc == 0) {
    (void)w.release();  // owned by the write callback now
  }
}

void control_server::send_to(std::uint64_t id, const json& j) {
  if (auto c = conns_.find(id); c != conns_.end() && !c->second->closing) {
    send(*c->second, j);
  }
}

void control_server::broadcast(const json& j) {
  std::vector<std::uint64_t> slow;
  for (auto& [id, c] : conns_) {
    if (!c->events || c->closing) {
      continue;
    }
    if (uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(c->pipe.get())) >
        max_subscriber_backlog) {
      slow.push_back(id);  // a subscriber that does not read loses its stream, not our memory
      continue;
    }
    send(*c, j);
  }
  for (auto id : slow) {
    core::log_warn("otpd: event subscriber {} is not reading; closing it", id);
    close(id);
  }
}

// Every request is answered exactly once: a handler's reply, or an error
// reply when the line is not a request or its handler throws (a field of
// the wrong type, an allocation failure): a bad request never reaches the
// loop.
void control_server::handle_request(control_conn& c, const std::string& line) {
  if (line.empty()) {
    return;
  }
  json req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains(protocol::field::cmd) ||
      !req[protocol::field::cmd].is_string()) {
    send(c, protocol::error_reply{"malformed request: expected {\"cmd\": ...}"}.to_json());
    return;
  }
  json ans;
  try {
    ans = on_request_(c, req);
  } catch (const json::exception& e) {
    ans = protocol::error_reply{std::string("bad request: ") + e.what()}.to_json();
  } catch (const std::exception& e) {
    ans = protocol::error_reply{std::string("unable to handle request: ") + e.what()}.to_json();
  } catch (...) {
    ans = protocol::error_reply{"unable to handle request"}.to_json();
  }
  if (!ans.is_null()) {
    send(c, ans);
  }
  after_request_();
}

}  // namespace otpd::supervisor

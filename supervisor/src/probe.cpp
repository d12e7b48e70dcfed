// A network probe attempt (probe.hpp). Ownership: the attempt is shared
// between its net_probe and each libuv request in flight (getaddrinfo,
// connect, write), so a request's callback always finds it alive, even after
// the owner let go; its handles (timer, tcp or pipe) are otpd::uv handles
// closed at the latest by its destructor, so no handle callback can outlive
// it. finish() keeps a reference of its own while it calls done, since done
// may drop the owner's.
#include "probe.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <otpd/uv/handle.hpp>

namespace otpd::supervisor::detail {

std::string describe(const probe_target& t) {
  bool v6 = t.host.find(':') != std::string::npos;
  std::string hostport =
      v6 ? fmt::format("[{}]:{}", t.host, t.port) : fmt::format("{}:{}", t.host, t.port);
  switch (t.k) {
    case probe_target::kind::tcp:
      return "tcp " + hostport;
    case probe_target::kind::unix_socket:
      return "unix " + t.path;
    case probe_target::kind::http:
      return "http " + hostport + t.path;
  }
  return "?";
}

namespace {

std::string uv_error(int status) {
  return uv_strerror(status);
}

// The status code of an HTTP status line ("HTTP/1.1 204 No Content"), or -1.
int status_code(std::string_view line) {
  if (!line.starts_with("HTTP/")) {
    return -1;
  }
  auto sp = line.find(' ');
  if (sp == std::string_view::npos || line.size() < sp + 4) {
    return -1;
  }
  int code = 0;
  for (std::size_t i = sp + 1; i < sp + 4; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      return -1;
    }
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > sp + 4 && line[sp + 4] != ' ' && line[sp + 4] != '\r') {
    return -1;
  }
  return code;
}

// Host name lookups under way in libuv's thread pool, over every probe.
// Only the loop's thread touches it.
constexpr int max_lookups_in_flight = 64;
int lookups_in_flight = 0;

}  // namespace

class probe_attempt : public std::enable_shared_from_this<probe_attempt> {
 public:
  probe_attempt(uv_loop_t* loop, probe_target t, net_probe::done_fn done)
      : loop_(loop), t_(std::move(t)), done_(std::move(done)) {}
  probe_attempt(const probe_attempt&) = delete;
  probe_attempt& operator=(const probe_attempt&) = delete;
  probe_attempt(probe_attempt&&) = delete;
  probe_attempt& operator=(probe_attempt&&) = delete;
  ~probe_attempt() = default;  // the uv::handle members close what is still open

  [[nodiscard]] bool over() const noexcept { return over_; }

  void begin(std::uint64_t timeout_ms) {
    timer_ = uv::handle<uv_timer_t>::make();
    uv_timer_init(loop_, timer_.get());
    timer_.get()->data = this;
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* h) {
          auto* a = static_cast<probe_attempt*>(h->data);
          a->finish(false, a->last_error_.empty()
                               ? "no answer in time"
                               : "no answer in time (last: " + a->last_error_ + ")");
        },
        timeout_ms, 0);
    // The work itself starts from the loop, so that done never runs inside
    // net_probe::start (its caller has not stored the net_probe yet).
    kick_ = uv::handle<uv_timer_t>::make();
    uv_timer_init(loop_, kick_.get());
    kick_.get()->data = this;
    uv_timer_start(
        kick_.get(), [](uv_timer_t* h) { static_cast<probe_attempt*>(h->data)->run(); }, 0, 0);
  }

  // Stops without a call to done (the owner has gone or moved on).
  void cancel() noexcept {
    if (over_) {
      return;
    }
    over_ = true;
    done_ = nullptr;
    release();
  }

 private:
  void run() {
    kick_.reset();
    if (t_.k == probe_target::kind::unix_socket) {
      connect_unix();
      return;
    }
    sockaddr_storage ss{};
    if (numeric(ss)) {
      addrs_.push_back(ss);
      connect_next();
      return;
    }
    resolve();
  }

  struct gai_op {
    uv_getaddrinfo_t req{};
    std::shared_ptr<probe_attempt> a;
  };
  struct connect_op {
    uv_connect_t req{};
    std::shared_ptr<probe_attempt> a;
  };
  struct write_op {
    uv_write_t req{};
    std::shared_ptr<probe_attempt> a;
    std::string data;
  };

  bool numeric(sockaddr_storage& ss) const {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    if (uv_ip4_addr(t_.host.c_str(), t_.port, v4) == 0) {
      return true;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    return uv_ip6_addr(t_.host.c_str(), t_.port, v6) == 0;
  }

  void resolve() {
    // A lookup cannot be interrupted: with a DNS server that does not
    // answer, each may hold a thread of libuv's pool for the resolver's
    // whole timeout while new probes keep coming. Past this many, a probe
    // fails at once instead of queueing behind them.
    if (lookups_in_flight >= max_lookups_in_flight) {
      finish(false, fmt::format("unable to resolve {}: {} lookups already under way", t_.host,
                                max_lookups_in_flight));
      return;
    }
    auto op = std::make_unique<gai_op>();
    op->a = shared_from_this();
    op->req.data = op.get();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    std::string port = std::to_string(t_.port);
    int rc = uv_getaddrinfo(
        loop_, &op->req,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
          std::unique_ptr<gai_op> owned(static_cast<gai_op*>(req->data));
          --lookups_in_flight;
          probe_attempt& a = *owned->a;
          a.gai_ = nullptr;
          if (!a.over_) {
            a.on_resolved(status, res);
          }
          uv_freeaddrinfo(res);
        },
        t_.host.c_str(), port.c_str(), &hints);
    if (rc != 0) {
      finish(false, "unable to resolve " + t_.host + ": " + uv_error(rc));
      return;
    }
    ++lookups_in_flight;
    gai_ = op.release();  // freed by its callback, which libuv always calls
  }

  void on_resolved(int status, const addrinfo* res) {
    if (status != 0) {
      finish(false, "unable to resolve " + t_.host + ": " + uv_error(status));
      return;
    }
    for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
          ai->ai_addrlen <= sizeof(sockaddr_storage)) {
        sockaddr_storage ss{};
        std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        addrs_.push_back(ss);
      }
    }
    if (addrs_.empty()) {
      finish(false, "no address for " + t_.host);
      return;
    }
    connect_next();
  }

  // Tries the next address; out of them, the last error is the answer.
  void connect_next() {
    if (next_addr_ >= addrs_.size()) {
      finish(false, last_error_);
      return;
    }
    const sockaddr_storage& ss = addrs_[next_addr_++];
    tcp_ = uv::handle<uv_tcp_t>::make();
    if (int rc = uv_tcp_init(loop_, tcp_.get()); rc != 0) {
      tcp_.discard();
      finish(false, "unable to make a socket: " + uv_error(rc));
      return;
    }
    tcp_.get()->data = this;
    auto op = std::make_unique<connect_op>();
    op->a = shared_from_this();
    op->req.data = op.get();
    int rc = uv_tcp_connect(
        &op->req, tcp_.get(), reinterpret_cast<const sockaddr*>(&ss),
        [](uv_connect_t* req, int status) {
          std::unique_ptr<connect_op> owned(static_cast<connect_op*>(req->data));
          probe_attempt& a = *owned->a;
          if (!a.over_ && a.tcp_ && req->handle == reinterpret_cast<uv_stream_t*>(a.tcp_.get())) {
            a.on_connected(status);
          }
        });
    if (rc != 0) {
      last_error_ = uv_error(rc);
      tcp_.reset();
      connect_next();
      return;
    }
    op.release();  // freed by its callback (called with UV_ECANCELED on a close)
  }

  void connect_unix() {
    pipe_ = uv::handle<uv_pipe_t>::make();
    if (int rc = uv_pipe_init(loop_, pipe_.get(), 0); rc != 0) {
      pipe_.discard();
      finish(false, "unable to make a socket: " + uv_error(rc));
      return;
    }
    pipe_.get()->data = this;
    auto op = std::make_unique<connect_op>();
    op->a = shared_from_this();
    op->req.data = op.get();
    uv_pipe_connect(&op->req, pipe_.get(), t_.path.c_str(), [](uv_connect_t* req, int status) {
      std::unique_ptr<connect_op> owned(static_cast<connect_op*>(req->data));
      probe_attempt& a = *owned->a;
      if (!a.over_) {
        a.on_connected(status);
      }
    });
    op.release();  // uv_pipe_connect reports even its own errors through the callback
  }

  uv_stream_t* stream() const {
    return tcp_ ? reinterpret_cast<uv_stream_t*>(tcp_.get())
                : reinterpret_cast<uv_stream_t*>(pipe_.get());
  }

  void on_connected(int status) {
    if (status != 0) {
      last_error_ = uv_error(status);
      if (t_.k == probe_target::kind::unix_socket) {
        finish(false, last_error_);
        return;
      }
      tcp_.reset();
      connect_next();
      return;
    }
    if (t_.k != probe_target::kind::http) {
      finish(true, {});
      return;
    }
    send_request();
  }

  void send_request() {
    bool v6 = t_.host.find(':') != std::string::npos;
    std::string host = v6 ? "[" + t_.host + "]" : t_.host;
    auto op = std::make_unique<write_op>();
    op->a = shared_from_this();
    op->req.data = op.get();
    op->data = fmt::format(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: otpd-probe\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n",
        t_.path, host, t_.port);
    uv_buf_t buf = uv_buf_init(op->data.data(), static_cast<unsigned>(op->data.size()));
    int rc = uv_write(&op->req, stream(), &buf, 1, [](uv_write_t* req, int status) {
      std::unique_ptr<write_op> owned(static_cast<write_op*>(req->data));
      probe_attempt& a = *owned->a;
      if (!a.over_ && status != 0) {
        a.finish(false, "unable to send the request: " + uv_error(status));
      }
    });
    if (rc != 0) {
      finish(false, "unable to send the request: " + uv_error(rc));
      return;
    }
    op.release();  // freed by its callback
    rc = uv_read_start(
        stream(),
        [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
          auto* a = static_cast<probe_attempt*>(h->data);
          *b = uv_buf_init(a->buf_, sizeof a->buf_);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          static_cast<probe_attempt*>(s->data)->on_read(n);
        });
    if (rc != 0) {
      finish(false, "unable to read the answer: " + uv_error(rc));
    }
  }

  // Collects the status line, at most max_status_line bytes of it.
  void on_read(ssize_t n) {
    if (n == 0) {
      return;
    }
    if (n < 0) {
      finish(false, n == UV_EOF ? std::string("closed before an HTTP status line")
                                : "unable to read the answer: " + uv_error(static_cast<int>(n)));
      return;
    }
    std::string_view chunk(buf_, static_cast<std::size_t>(n));
    auto nl = chunk.find('\n');
    status_line_.append(chunk.substr(0, nl));
    if (nl == std::string_view::npos) {
      if (status_line_.size() > net_probe::max_status_line) {
        finish(false, fmt::format("no HTTP status line in the first {} bytes",
                                  net_probe::max_status_line));
      }
      return;
    }
    if (status_line_.size() > net_probe::max_status_line) {
      status_line_.resize(net_probe::max_status_line);
    }
    int code = status_code(status_line_);
    if (code < 0) {
      finish(false, "not an HTTP status line");
    } else if (code >= 200 && code < 400) {
      finish(true, {});
    } else {
      finish(false, fmt::format("HTTP status {}", code));
    }
  }

  void release() noexcept {
    timer_.reset();
    kick_.reset();
    tcp_.reset();
    pipe_.reset();
    if (gai_ != nullptr) {
      (void)uv_cancel(reinterpret_cast<uv_req_t*>(&gai_->req));  // EBUSY: it ends on its own
    }
  }

  void finish(bool ok, std::string error) {
    if (over_) {
      return;
    }
    over_ = true;
    release();
    auto keep = shared_from_this();  // done may drop the owner's reference
    auto done = std::move(done_);
    done_ = nullptr;
    if (done) {
      done(probe_result{ok, std::move(error)});
    }
  }

  uv_loop_t* loop_;
  probe_target t_;
  net_probe::done_fn done_;
  bool over_ = false;
  uv::handle<uv_timer_t> timer_;
  uv::handle<uv_timer_t> kick_;
  uv::handle<uv_tcp_t> tcp_;
  uv::handle<uv_pipe_t> pipe_;
  gai_op* gai_ = nullptr;  // while resolving (owned by the request itself)
  std::vector<sockaddr_storage> addrs_;
  std::size_t next_addr_ = 0;
  std::string last_error_;
  std::string status_line_;
  char buf_[512]{};
};

net_probe net_probe::start(uv_loop_t* loop, const probe_target& t, std::uint64_t timeout_ms,
                           done_fn done) {
  net_probe p;
  p.a_ = std::make_shared<probe_attempt>(loop, t, std::move(done));
  p.a_->begin(timeout_ms);
  return p;
}

void net_probe::reset() noexcept {
  if (a_) {
    a_->cancel();
    a_.reset();
  }
}

bool net_probe::busy() const noexcept {
  return a_ && !a_->over();
}

}  // namespace otpd::supervisor::detail

#pragma once

// One network health probe on the daemon's loop, shared by readiness (is the
// child up yet?) and liveness (is it still answering?):
//   tcp   a connect to HOST:PORT succeeds;
//   unix  a connect to a Unix stream socket succeeds;
//   http  a GET of PATH on HOST:PORT answers with a 2xx or 3xx status line.
// A host name (or `localhost`) is resolved on the loop (uv_getaddrinfo runs
// in libuv's thread pool), never blocking it; each address it gives is
// tried in turn, so `localhost` works for a server on 127.0.0.1 or on ::1.
// A numeric address (IPv4, or IPv6 without brackets) is used as it is.
//
// Why no HTTP library: cpp-httplib's client blocks. All a probe needs is a
// request line and the first line of the answer, which is read with a bound
// (max_status_line bytes) and nothing after it.
//
// Command probes are not here: their process is reaped by the daemon's one
// reaper (daemon.cpp), so the daemon runs them itself.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace otpd::supervisor::detail {

struct probe_target {
  enum class kind : std::uint8_t { tcp, unix_socket, http };
  kind k = kind::tcp;
  std::string host;  // tcp, http: a name or a numeric address (IPv6 without brackets)
  int port = 0;
  std::string path;  // unix: the socket; http: the request path ("/healthz")
};

// "tcp localhost:80", "unix /run/app.sock", "http [::1]:8080/healthz".
[[nodiscard]] std::string describe(const probe_target& t);

struct probe_result {
  bool ok = false;
  std::string error;  // why not, for events and logs ("connection refused", "HTTP status 503")
};

class probe_attempt;

// One attempt, owned like a unique_ptr: done runs exactly once, from the
// loop, unless the net_probe is reset (or destroyed) first, which cancels the
// attempt without a call. The attempt's memory outlives the net_probe until
// libuv has given back every handle and request (see probe.cpp).
class net_probe {
 public:
  using done_fn = std::function<void(const probe_result&)>;
  static constexpr std::size_t max_status_line = 1024;

  net_probe() noexcept = default;
  net_probe(net_probe&&) noexcept = default;
  net_probe& operator=(net_probe&& o) noexcept {
    if (this != &o) {
      reset();
      a_ = std::move(o.a_);
    }
    return *this;
  }
  net_probe(const net_probe&) = delete;
  net_probe& operator=(const net_probe&) = delete;
  ~net_probe() { reset(); }

  // Starts an attempt that gives up after timeout_ms. done may reset or
  // replace this net_probe.
  [[nodiscard]] static net_probe start(uv_loop_t* loop, const probe_target& t,
                                       std::uint64_t timeout_ms, done_fn done);
  void reset() noexcept;
  // An attempt is under way (started, its done not called yet).
  [[nodiscard]] bool busy() const noexcept;

 private:
  std::shared_ptr<probe_attempt> a_;
};

}  // namespace otpd::supervisor::detail

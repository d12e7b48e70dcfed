#pragma once

// otpd-web's HTTP side: cpp-httplib serving the observer's model (a page,
// its JSON, server-sent events, /metrics) and forwarding the page's
// actions to otpd's control socket. docs/OBSERVER.md has the endpoints and
// the security model (token, cookie, CSRF, escaping).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <otpd/observer/session.hpp>

namespace otpd::observer::web {

struct options {
  std::string runtime_dir;
  std::string bind = "127.0.0.1";
  int port = 0;  // 0: the kernel picks one
  // Open event streams allowed at once; each holds one of the pool's
  // threads, so the pool has this many plus spare_threads for every other
  // request (/metrics answers however many pages are open).
  int max_streams = 32;
  int spare_threads = 8;
  std::chrono::milliseconds tick{1000};  // /proc samples and tree pushes
};

// Messages for the open event streams: a ring with sequence numbers that
// every stream reads at its own pace; one that falls behind the ring gets
// a fresh snapshot instead of what it missed.
class broadcaster {
 public:
  static constexpr std::size_t ring_size = 512;
  struct message {
    std::uint64_t seq;
    std::string text;  // a whole SSE message ("event: ...\ndata: ...\n\n")
  };
  void publish(std::string text);
  // Messages after seq, waiting up to timeout for one. *lost is set when
  // some after seq have left the ring.
  std::deque<message> wait_after(std::uint64_t seq, std::chrono::milliseconds timeout, bool* lost);
  [[nodiscard]] std::uint64_t last_seq();
  void stop();
  [[nodiscard]] bool stopped();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<message> ring_;
  std::uint64_t seq_ = 0;
  bool stopped_ = false;
};

class server {
 public:
  explicit server(options opts);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  server(server&&) = delete;
  server& operator=(server&&) = delete;

  // Token, bind, URL file; then serves until stop(). Returns the exit
  // code (0 after stop, 111 when it could not start).
  int run();
  // From any thread (the signal thread): ends run().
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

}  // namespace otpd::observer::web

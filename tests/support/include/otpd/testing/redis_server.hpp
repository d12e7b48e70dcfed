#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::testing {

// A real redis-server for a test or a bench: on a free loopback TCP port and
// on a Unix socket in its own temporary directory, no persistence. The
// constructor starts it and waits until it answers PING. When redis-server
// is missing or does not come up, running() is false and error() says why:
// a test ASSERT_TRUE(server.running()) << server.error() first, so that it
// FAILS (never skips) without Redis; a bench throws (bench::redis_server).
// The server is stopped (and reaped) on destruction; it dies with its
// parent too. No GoogleTest here: the benches use it.
class redis_server {
 public:
  redis_server();
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  redis_server(redis_server&&) = delete;
  redis_server& operator=(redis_server&&) = delete;

  [[nodiscard]] bool running() const noexcept { return pid_ > 0; }
  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] const std::string& unix_path() const noexcept { return unix_path_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  // Why the last start failed; empty after a successful one.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

  // (Re)starts the server on the same port and socket path and waits until
  // it answers PING (scaled timeout). False, with error() set, when it
  // cannot.
  [[nodiscard]] bool start();
  // SIGTERM, wait for the exit (SIGKILL if it lingers), reap.
  void stop();
  // SIGKILL and reap: the server vanishes without a goodbye.
  void kill();
  // SIGSTOP / SIGCONT: the server stops answering without closing anything.
  void pause();
  void resume();
  // One PING over the Unix socket, bounded by timeout.
  [[nodiscard]] bool ping(std::chrono::milliseconds timeout = std::chrono::milliseconds(200)) const;

 private:
  void reap_now();

  temp_dir dir_{"otpd-redis"};
  std::string unix_path_;
  int port_ = 0;
  pid_t pid_ = -1;
  core::unique_fd pidfd_;
  bool paused_ = false;
  std::string error_;
};

}  // namespace otpd::testing

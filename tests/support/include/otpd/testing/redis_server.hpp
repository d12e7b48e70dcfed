#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::testing {

// A real redis-server for a test: on a free loopback TCP port and on a Unix
// socket in its own temporary directory, no persistence. The constructor
// starts it and waits until it answers PING; when redis-server is missing or
// does not come up, the test FAILS (ADD_FAILURE with the reason) and
// running() is false: tests ASSERT_TRUE(server.running()) first. The server
// is stopped (and reaped) on destruction; it dies with the test process too.
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

  // (Re)starts the server on the same port and socket path and waits until
  // it answers PING (scaled timeout). Adds a test failure and returns false
  // when it cannot.
  bool start();
  // SIGTERM, wait for the exit (SIGKILL if it lingers), reap.
  void stop();
  // SIGKILL and reap: the server vanishes without a goodbye.
  void kill();
  // SIGSTOP / SIGCONT: the server stops answering without closing anything.
  void pause();
  void resume();
  // One PING over the Unix socket, bounded by timeout.
  [[nodiscard]] bool ping(std::chrono::milliseconds timeout = std::chrono::milliseconds(200)) const;

  // Where redis-server is, or empty when it is not installed.
  [[nodiscard]] static std::string find_redis_server();
  // A TCP port on 127.0.0.1 that was free a moment ago.
  [[nodiscard]] static int free_port();

 private:
  void reap_now();

  temp_dir dir_{"otpd-redis"};
  std::string unix_path_;
  int port_ = 0;
  pid_t pid_ = -1;
  core::unique_fd pidfd_;
  bool paused_ = false;
};

}  // namespace otpd::testing

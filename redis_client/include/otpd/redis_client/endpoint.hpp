#pragma once

#include <string>

namespace otpd::redis_client {

// Where a Redis server listens: TCP host and port, or a Unix socket path
// (used when unix_path is not empty).
struct endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_path;

  static endpoint tcp(std::string host, int port) { return {std::move(host), port, {}}; }
  static endpoint unix_socket(std::string path) { return {{}, 0, std::move(path)}; }

  [[nodiscard]] bool is_unix() const noexcept { return !unix_path.empty(); }
  // "127.0.0.1:6379" or "unix:/path/redis.sock", for log lines.
  [[nodiscard]] std::string to_string() const {
    return is_unix() ? "unix:" + unix_path : host + ":" + std::to_string(port);
  }
};

}  // namespace otpd::redis_client

#pragma once

// The observer's two connections to otpd's control socket, and the model
// they keep current. Only what the socket offers: status, events with
// follow, and the child commands (docs/PROTOCOL.md).
//
//   commands  one request, one reply (status, restart, stop, kill, ...)
//   events    "events" with follow: a line per lifecycle event; its fd is
//             for the caller's poll(2), drained by pump() without blocking
//
// A session is used by one thread at a time (otpd-web wraps it in a mutex).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/observer/model.hpp>

namespace otpd::observer {

// One connection to DIR/control.sock, newline-delimited JSON.
class link {
 public:
  static constexpr std::size_t max_line = 64u << 20;  // a status of a huge tree fits

  // Errors: the errno of socket/connect (ENOENT or ECONNREFUSED: no otpd).
  [[nodiscard]] core::Result<void> connect(const std::string& runtime_dir);
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] bool connected() const noexcept { return static_cast<bool>(fd_); }
  void close() noexcept;
  [[nodiscard]] core::Result<void> send(const json& request);
  // Complete lines that have arrived, without blocking; errc::closed once
  // otpd closed the connection (lines before the EOF are still returned
  // first), errc::too_large for a line over max_line.
  [[nodiscard]] core::Result<std::vector<std::string>> read_available();
  // The next line, waiting at most timeout (errc::timeout).
  [[nodiscard]] core::Result<std::string> read_line(std::chrono::milliseconds timeout);
  // send, then the next line as a JSON object (errc::malformed otherwise).
  [[nodiscard]] core::Result<json> call(const json& request, std::chrono::milliseconds timeout);

 private:
  // Reads once (after poll said readable); false at EOF.
  core::Result<bool> fill();
  core::unique_fd fd_;
  std::string buf_;
};

class session {
 public:
  explicit session(std::string runtime_dir, clock_fn now = steady_ms, clock_fn wall = wall_ms);

  // Connects both links, subscribes to the events and fetches a status.
  // The events of the ring that the model has already applied (by ts_ms)
  // are skipped, so reopening after otpd came back counts nothing twice.
  [[nodiscard]] core::Result<void> open();
  void close() noexcept;
  [[nodiscard]] bool is_open() const noexcept { return events_.connected(); }
  // The events link's fd, for poll(2); -1 when closed.
  [[nodiscard]] int event_fd() const noexcept { return events_.fd(); }

  // Applies every event that has arrived; returns them (the lines as
  // parsed). A fresh status is fetched when an event asked for one, at
  // most every min_status_interval (the rest wait for the next pump or
  // tick). errc::closed when otpd went away: the session is then closed.
  [[nodiscard]] core::Result<std::vector<json>> pump();
  // The periodic work: a status every status_interval (or when one is
  // pending), /proc samples of every running child and of otpd.
  [[nodiscard]] core::Result<void> tick();
  [[nodiscard]] core::Result<void> refresh_status();
  void sample_now();

  // One command (a protocol request's to_json()) and its reply.
  [[nodiscard]] core::Result<json> command(const json& request);

  [[nodiscard]] model& tree() noexcept { return model_; }
  [[nodiscard]] const model& tree() const noexcept { return model_; }
  [[nodiscard]] const std::string& runtime_dir() const noexcept { return dir_; }

  std::chrono::milliseconds status_interval{2000};
  std::chrono::milliseconds min_status_interval{100};
  std::chrono::milliseconds timeout{5000};

 private:
  std::string dir_;
  clock_fn now_;
  model model_;
  link commands_;
  link events_;
  bool status_due_ = false;
  std::int64_t last_status_ = 0;
};

}  // namespace otpd::observer

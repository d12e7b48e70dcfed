#pragma once

#include <sys/types.h>

#include <string>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/protocol/control.hpp>

namespace otpd::supervisor {

// A blocking client of otpd's control socket: newline-delimited JSON
// (docs/PROTOCOL.md; the messages are otpd::protocol's).
class control_client {
 public:
  // Connects to DIR/control.sock and checks the listener's credentials
  // (SO_PEERCRED) before anything is sent. Errors: the errno of
  // socket/connect (ENOENT or ECONNREFUSED when no otpd runs there);
  // errc::access_denied when the listener is neither root nor our euid
  // (peer_uid() says who it is).
  [[nodiscard]] core::Result<void> connect(const std::string& runtime_dir);
  // The listener's uid and pid, once connect has got that far.
  [[nodiscard]] uid_t peer_uid() const noexcept { return peer_uid_; }
  [[nodiscard]] pid_t peer_pid() const noexcept { return peer_pid_; }
  // Sends one request line (a JSON object, without the newline).
  [[nodiscard]] core::Result<void> send_line(const std::string& line);
  // Reads the next line (without its newline); errc::closed at EOF.
  [[nodiscard]] core::Result<std::string> read_line();
  // send_line then read_line.
  [[nodiscard]] core::Result<std::string> request(const std::string& line);
  // One request (an otpd::protocol request's to_json()) and its reply, as
  // JSON. Errors: those of send_line and read_line; errc::malformed when
  // the reply line is not a JSON object.
  [[nodiscard]] core::Result<protocol::json> call(const protocol::json& request);

 private:
  core::unique_fd fd_;
  std::string buf_;
  uid_t peer_uid_ = static_cast<uid_t>(-1);
  pid_t peer_pid_ = -1;
};

}  // namespace otpd::supervisor

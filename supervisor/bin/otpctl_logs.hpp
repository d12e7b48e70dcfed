#pragma once

// otpctl logs: the tail of a child's captured output, read from the log file
// otpd writes (status gives its path), and with follow, every line after
// it, across rotations.

#include <string>

#include <otpd/protocol/control.hpp>

namespace otpd::otpctl {

struct logs_options {
  std::string id;  // child id or path
  int lines = 10;
  bool follow = false;
  bool stderr_stream = false;  // stderr's file instead of stdout's
};

// Prints the last o.lines lines of the child's output (from the rotated
// file path.1 too when the current one has fewer), then with o.follow
// keeps printing what is appended, reopening the file when it is rotated
// (renamed) or truncated; never returns then, except on an error.
// Returns otpctl's exit code: 0, 1 (no such child, its output is not a
// file), 111 (the file cannot be read).
[[nodiscard]] int logs(const protocol::status_reply& st, const logs_options& o);

}  // namespace otpd::otpctl

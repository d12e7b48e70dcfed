#pragma once

#include <string>
#include <string_view>

#include <otpd/core/result.hpp>

namespace otpd::core {

// The node's runtime directory (mailbox sockets, names, control socket):
// $OTPD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/otpd, else /tmp/otpd-<uid>.
[[nodiscard]] std::string default_runtime_dir();

// Creates dir (and its missing parents) and makes sure it is a directory of
// ours with mode 0700: other users must not reach our mailboxes.
[[nodiscard]] Result<void> ensure_private_dir(const std::string& dir);

// Writes data to path atomically: a temporary file in the same directory,
// then rename(2), so readers see the old or the new content, never half.
[[nodiscard]] Result<void> write_file_atomic(const std::string& path, const std::string& data,
                                             unsigned mode = 0600);

// A private directory /tmp/<prefix>.XXXXXX (mkdtemp, mode 0700), removed
// with its content when the object goes. For tests and benchmarks, where a
// /tmp that cannot take a directory is fatal: the constructor throws
// std::system_error.
class temp_dir {
 public:
  explicit temp_dir(std::string_view prefix = "otpd");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  temp_dir(temp_dir&&) = delete;
  temp_dir& operator=(temp_dir&&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace otpd::core

#pragma once

// Output capture: a child's stdout/stderr, through a pipe, into a log file
// rotated by size. One sink per file, shared by every child writing to it.

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include <otpd/core/unique_fd.hpp>
#include <otpd/supervisor/config.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::supervisor {

// One log file with size rotation: path, path.1 .. path.keep.
//
// otpd may run as root and write where a config says, so the file is never
// reached through a path an other user could redirect: the directory is
// opened once (O_DIRECTORY | O_NOFOLLOW) and checked (it and every directory
// above it owned by otpd's euid or root, and not writable by other users:
// group write only for otpd's own group, other write only with the sticky
// bit, as /tmp), then the file is created, reopened and rotated relative to
// that fd with O_NOFOLLOW, so a symlink planted at the log path, before start
// or in its place at a rotation, is refused and never followed. It must be a
// regular file (a FIFO would block the loop).
//
// Errors never stop the node (a full disk, a refused path): the output is
// dropped and counted, one warning is logged when a failure begins, and the
// file is retried with a growing delay (1 s doubling to 60 s), not on every
// write; when it works again one line says how many bytes were dropped.
struct log_sink {
  using clock = std::chrono::steady_clock;

  output_spec spec;
  core::unique_fd dir;  // the checked directory of spec.path
  core::unique_fd fd;
  std::uint64_t size = 0;
  std::uint64_t dropped = 0;  // bytes dropped in the current failure burst
  std::uint64_t dropped_total = 0;
  std::string error;             // why the file is not open; empty when it is
  clock::time_point retry_at{};  // no new attempt before this
  std::chrono::milliseconds retry_delay{0};
  bool dir_shared = false;  // the directory is sticky and other users may write it

  // (Re)opens spec.path for append, creating its directory; true when open.
  bool open();
  // path.i becomes path.i+1 for i < keep, path becomes path.1, then a new path.
  void rotate();
  // Splits a chunk at the size limit, so no file grows past max_bytes
  // however much the child writes at once.
  void write(const char* data, std::size_t n);
  // Forgets the back-off: the next write (or this call) tries at once.
  bool reopen();

 private:
  bool open_dir();
  void failed(std::string why);
  void drop(std::size_t n);
};

// The read ends of every capture pipe, each watched on the loop and copied
// into its sink until EOF. A pipe may outlive its child (grandchildren
// holding it), so captures are keyed by fd, not by pid.
class output_capture {
 public:
  explicit output_capture(uv_loop_t* loop) noexcept : loop_(loop) {}
  output_capture(const output_capture&) = delete;
  output_capture& operator=(const output_capture&) = delete;
  output_capture(output_capture&&) = delete;
  output_capture& operator=(output_capture&&) = delete;
  ~output_capture() = default;

  // The sink of spec.path, opened on first use; its rotation settings
  // follow the latest spec (a reload may change them).
  [[nodiscard]] std::shared_ptr<log_sink> sink_for(const output_spec& spec);
  // Takes ownership of read_fd (non-blocking) and copies it into sink until
  // EOF. When the fd cannot be watched it is closed and the output dropped.
  void add(core::unique_fd read_fd, std::shared_ptr<log_sink> sink);
  // Reopens every sink's file (after an external rotation); returns how many.
  std::size_t reopen_all();
  // Stops every capture (closes the watches, then the fds).
  void clear() { captures_.clear(); }

 private:
  struct capture {
    output_capture* owner = nullptr;
    core::unique_fd fd;  // declared before poll: the poll handle closes first
    uv::handle<uv_poll_t> poll;
    std::shared_ptr<log_sink> sink;
  };
  static void on_readable(uv_poll_t* h, int status, int events);

  uv_loop_t* loop_;
  std::unordered_map<int, std::unique_ptr<capture>> captures_;
  std::map<std::string, std::shared_ptr<log_sink>> sinks_;
};

}  // namespace otpd::supervisor

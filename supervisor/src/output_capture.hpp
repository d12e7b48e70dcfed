#pragma once

// Output capture: a child's stdout/stderr, through a pipe, into a log file
// rotated by size. One sink per file, shared by every child writing to it.

#include <uv.h>

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

// One log file with size rotation: path, path.1 .. path.keep. Errors are
// logged and the output dropped: a full disk must not stop the node.
struct log_sink {
  output_spec spec;
  core::unique_fd fd;
  std::uint64_t size = 0;

  // (Re)opens spec.path for append, creating its directory.
  void open();
  // path.i becomes path.i+1 for i < keep, path becomes path.1, then a new path.
  void rotate();
  // Splits a chunk at the size limit, so no file grows past max_bytes
  // however much the child writes at once.
  void write(const char* data, std::size_t n);
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

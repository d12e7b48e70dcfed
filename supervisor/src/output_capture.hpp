#pragma once

// Output capture: a child's stdout/stderr, through a pipe, cut into lines,
// into a log file rotated by size (one sink per file, shared by every child
// writing to it) or onto otpd's own stdout/stderr behind the child's path.
//
// Lines: otpd writes whole lines, each (by default, for files) behind the
// wall-clock time its first byte was read, RFC 3339 in UTC with ms
// ("2026-12-02T10:01:02.345Z "). A line the child leaves unfinished for
// line_framer::default_flush_ms, or longer than default_max_line bytes, is
// written as a line of its own (otpd adds the newline); its rest starts the
// next line. A file is rotated only between lines. Bytes are kept as they
// are (no UTF-8 check: a log file is bytes).

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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
  // Writes a record of whole lines (a partial last line counts as one),
  // rotating first when it would pass max_bytes, and between two of its
  // lines when only some fit: a line is never split across files. A single
  // line longer than max_bytes goes whole into a file of its own.
  void write(const char* data, std::size_t n);
  // Forgets the back-off: the next write (or this call) tries at once.
  bool reopen();

 private:
  bool open_dir();
  // Writes all n bytes to fd; false (after failed()) when it cannot.
  bool put(const char* data, std::size_t n);
  void failed(std::string why);
  void drop(std::size_t n);
};

// Cuts a byte stream into lines. No I/O and no clock of its own (the caller
// passes the time), so its rules are unit-tested with an injected clock.
// emit(line, wall_ms): the line without its '\n', and the wall-clock ms at
// which its first byte was fed.
class line_framer {
 public:
  static constexpr std::size_t default_max_line = 64 * 1024;
  static constexpr std::int64_t default_flush_ms = 100;

  explicit line_framer(std::size_t max_line = default_max_line,
                       std::int64_t flush_ms = default_flush_ms) noexcept
      : max_line_(max_line > 0 ? max_line : 1), flush_ms_(flush_ms) {}

  // Feeds n bytes read at (mono_ms, wall_ms): emits every line they end, and
  // every max_line bytes of a longer one; keeps the rest as the partial line.
  template <class Emit>
  void feed(const char* data, std::size_t n, std::int64_t mono_ms, std::int64_t wall_ms,
            Emit&& emit) {
    std::string_view in(data, n);
    while (!in.empty()) {
      if (partial_.empty()) {
        since_mono_ = mono_ms;
        since_wall_ = wall_ms;
      }
      // A line of exactly max_line bytes waits for its next byte: when that
      // is its newline, the line is whole (no empty line after a cut).
      std::size_t room = max_line_ - partial_.size();
      std::size_t nl = in.substr(0, room + 1).find('\n');
      if (nl != std::string_view::npos) {
        line_end(in.substr(0, nl), emit);
        in.remove_prefix(nl + 1);
      } else if (in.size() > room) {
        line_end(in.substr(0, room), emit);  // a line of max_line bytes, cut
        in.remove_prefix(room);
      } else {
        partial_.append(in);
        in = {};
      }
    }
  }
  // Emits the partial line once it has waited flush_ms since its first
  // byte; true when it did.
  template <class Emit>
  bool flush_due(std::int64_t mono_ms, Emit&& emit) {
    if (partial_.empty() || mono_ms < due_at()) {
      return false;
    }
    flush(emit);
    return true;
  }
  // Emits the partial line now (EOF, shutdown).
  template <class Emit>
  void flush(Emit&& emit) {
    if (!partial_.empty()) {
      emit(std::string_view(partial_), since_wall_);
      partial_.clear();
    }
  }
  [[nodiscard]] bool pending() const noexcept { return !partial_.empty(); }
  // When the partial line is due (monotonic ms); meaningful while pending().
  [[nodiscard]] std::int64_t due_at() const noexcept { return since_mono_ + flush_ms_; }

 private:
  template <class Emit>
  void line_end(std::string_view tail, Emit& emit) {
    if (partial_.empty()) {
      emit(tail, since_wall_);  // the common case: no copy
      return;
    }
    partial_.append(tail);
    emit(std::string_view(partial_), since_wall_);
    partial_.clear();
  }

  std::size_t max_line_;
  std::int64_t flush_ms_;
  std::string partial_;
  std::int64_t since_mono_ = 0;
  std::int64_t since_wall_ = 0;
};

// Where one capture pipe's lines go: a file; else otpd's own fd out_fd (1
// or 2) with prefix in front of each line; else, with syslog_pri set, a
// syslog message a line (ident: the child's path).
struct capture_target {
  std::shared_ptr<log_sink> file;
  int out_fd = -1;
  std::string prefix;  // "[web/api] "
  int syslog_pri = -1;
  std::string ident;
  bool timestamps = true;
};

// The read ends of every capture pipe, each watched on the loop and copied
// into its target until EOF. A pipe may outlive its child (grandchildren
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
  // Takes ownership of read_fd (non-blocking) and copies its lines into
  // target until EOF. When the fd cannot be watched it is closed and the
  // output dropped.
  void add(core::unique_fd read_fd, capture_target target);
  // otpctl reexec: reads what is in every pipe now and writes every partial
  // line (no line is cut in two by the exec), then lists the pipes with
  // their targets. They stay open and watched: should the exec fail,
  // capture goes on as before.
  struct handed {
    int fd = -1;
    const capture_target* target = nullptr;
  };
  [[nodiscard]] std::vector<handed> handover();
  // Reopens every sink's file (after an external rotation); returns how many.
  std::size_t reopen_all();
  // Stops every capture (writes their partial lines, closes the watches,
  // then the fds).
  void clear();

 private:
  struct capture {
    output_capture* owner = nullptr;
    core::unique_fd fd;  // declared before poll: the poll handle closes first
    uv::handle<uv_poll_t> poll;
    capture_target target;
    line_framer framer;
  };
  static void on_readable(uv_poll_t* h, int status, int events);
  // Frames n bytes of c (n == 0: its partial line, at EOF or when due) and
  // writes the lines to its target.
  void deliver(capture& c, const char* data, std::size_t n, bool flush);
  void drain(int fd, capture& c);
  void arm_flush(capture& c);
  void send_syslog(const capture_target& t, std::string_view text);
  void on_flush_timer();

  uv_loop_t* loop_;
  std::unordered_map<int, std::unique_ptr<capture>> captures_;
  std::map<std::string, std::shared_ptr<log_sink>> sinks_;
  // Captures holding a partial line, and the one timer that flushes them.
  std::unordered_set<capture*> partial_;
  uv::handle<uv_timer_t> flush_timer_;
  std::int64_t timer_at_ = -1;  // when flush_timer_ fires (loop ms); -1: stopped
  std::string out_;             // lines formatted for one write
  core::unique_fd syslog_;      // connected on first use, again after a failed send
};

}  // namespace otpd::supervisor

#pragma once

// sd_notify from children: otpd as the service manager of its own children.
// A child with `readiness: sd_notify`, `watchdog_sec` or `notify_access`
// gets NOTIFY_SOCKET, pointing at the one notify socket of this otpd, and
// may speak systemd's protocol (sd_notify(3)): datagrams of KEY=VALUE lines.
// This file holds the parts without the daemon: the datagram parser (pure,
// unit-tested), the text clean-up for what a child says, the budget of the
// log lines about dropped datagrams, and the socket itself. What a datagram
// does to its child is node_daemon's (notify_children.cpp).
//
// The socket is in the abstract namespace ("@otpd-notify-<hash of the
// runtime dir>-<random>"), not a file: a child may run as another user
// (`user: nobody`) while the runtime dir is 0700, and an abstract address
// has no permissions and no file to leave behind after a SIGKILL. So any
// local process in otpd's network namespace can send to it (as to systemd's
// own /run/systemd/notify, mode 0777): a datagram counts only through the
// kernel's credentials of its sender (SO_PASSCRED), mapped to a child;
// everything else is dropped. The random part keeps the name from being
// taken first by someone who guessed it.

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::supervisor::detail {

// What one datagram says. Each field is set only when the datagram has its
// key with a value otpd understands; a key repeated counts as its last line.
struct notify_message {
  bool ready = false;                                // READY=1
  bool reloading = false;                            // RELOADING=1
  bool stopping = false;                             // STOPPING=1
  bool watchdog_ping = false;                        // WATCHDOG=1
  bool watchdog_trigger = false;                     // WATCHDOG=trigger
  bool barrier = false;                              // BARRIER=1 (its fd closed is the answer)
  std::optional<std::string> status;                 // STATUS=, cleaned (clean_text)
  std::optional<int> errno_value;                    // ERRNO=
  std::optional<std::uint64_t> watchdog_usec;        // WATCHDOG_USEC= (0: no watchdog)
  std::optional<std::uint64_t> extend_timeout_usec;  // EXTEND_TIMEOUT_USEC=
  std::optional<std::string> mainpid;                // MAINPID=, as written (ignored)
  // Assignments otpd does not act on (FDSTORE=1, MONOTONIC_USEC=...), by key.
  std::vector<std::string> ignored;
  // Known keys with values otpd cannot use ("WATCHDOG_USEC=abc"): skipped,
  // the rest of the datagram still counts. Cleaned for a log line.
  std::vector<std::string> bad;
};

// The largest datagram otpd reads, as systemd (NOTIFY_BUFFER_MAX): a larger
// one is dropped whole.
inline constexpr std::size_t notify_max_datagram = 4096;

// Parses one datagram: lines KEY=VALUE separated by '\n' (an empty last
// line allowed). Malformed, and dropped whole (the error's message says
// why): empty, larger than notify_max_datagram, a NUL byte, a line without
// '=', a key that is not a name ([A-Za-z_][A-Za-z0-9_]*).
[[nodiscard]] core::Result<notify_message> parse_notify(std::string_view datagram);

// Text from a child, made safe to keep, log and print: invalid UTF-8 and
// control characters (a terminal's escapes among them) become '?', and it is
// cut at max bytes (on a character boundary). JSON replies need valid UTF-8.
[[nodiscard]] std::string clean_text(std::string_view s, std::size_t max = 1024);

// How many log lines about dropped datagrams a window allows: the socket is
// reachable by every local user, whose floods must not flood the log. Past
// the budget the lines are counted, and the next window's first line says
// how many were left out.
class log_budget {
 public:
  log_budget(int lines, std::int64_t window_ms) : lines_(lines), window_ms_(window_ms) {}
  // Whether a line may be logged at now_ms; *skipped (when not null) gets
  // the lines left out before this one (then reset).
  bool allow(std::int64_t now_ms, std::uint64_t* skipped = nullptr);

 private:
  int lines_;
  std::int64_t window_ms_;
  std::int64_t window_start_ = -1;
  int used_ = 0;
  std::uint64_t skipped_ = 0;
};

// One datagram as received: its bytes and its sender's kernel credentials.
struct notify_datagram {
  pid_t pid = 0;  // 0: the sender is not visible in otpd's pid namespace
  uid_t uid = 0;
  gid_t gid = 0;
  bool has_creds = false;
  bool oversized = false;  // more than notify_max_datagram bytes: data is empty
  int fds = 0;             // SCM_RIGHTS fds it carried (all closed already)
  std::string data;
};

// The socket: a SOCK_DGRAM Unix socket in the abstract namespace with
// SO_PASSCRED, read on the loop (a uv_poll). Not movable: the poll points
// at it.
class notify_socket {
 public:
  using on_datagram = std::function<void(const notify_datagram&)>;

  notify_socket(const notify_socket&) = delete;
  notify_socket& operator=(const notify_socket&) = delete;
  notify_socket(notify_socket&&) = delete;
  notify_socket& operator=(notify_socket&&) = delete;
  ~notify_socket() = default;

  // Binds a fresh address for runtime_dir and starts reading; each datagram
  // goes to cb from the loop (at most max_per_wakeup per wake-up, so that a
  // flood cannot hold the loop).
  [[nodiscard]] static core::Result<std::unique_ptr<notify_socket>> open(
      uv_loop_t* loop, const std::string& runtime_dir, on_datagram cb);

  // The socket of an otpd before its reexec (fd and address handed over),
  // read on this loop: children keep their NOTIFY_SOCKET, and datagrams
  // queued during the exec are still there.
  [[nodiscard]] static core::Result<std::unique_ptr<notify_socket>> adopt(uv_loop_t* loop,
                                                                          core::unique_fd fd,
                                                                          std::string address,
                                                                          on_datagram cb);

  // What NOTIFY_SOCKET says: "@otpd-notify-...".
  [[nodiscard]] const std::string& address() const { return address_; }
  [[nodiscard]] int fd() const { return fd_.get(); }

  static constexpr int max_per_wakeup = 64;

 private:
  notify_socket() = default;
  core::Result<void> watch(uv_loop_t* loop);
  void on_readable();
  // One recvmsg: 1 a datagram in *out, 0 none queued, -1 an error (errno).
  int receive(notify_datagram& out);

  std::string address_;
  on_datagram cb_;
  core::unique_fd fd_;  // before poll_: the poll closes first
  uv::handle<uv_poll_t> poll_;
};

}  // namespace otpd::supervisor::detail

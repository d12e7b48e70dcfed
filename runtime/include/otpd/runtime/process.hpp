#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <otpd/core/clock.hpp>
#include <otpd/core/exit_reason.hpp>
#include <otpd/core/result.hpp>
#include <otpd/runtime/message.hpp>

// The process runtime: what makes an OS process behave like a BEAM process.
//
// Every process that calls init() owns a mailbox: a listening Unix STREAM
// socket at <runtime dir>/mbox/<pid>. Senders connect once per receiver and
// keep the connection, so each (sender, receiver) pair is one ordered byte
// stream of length-prefixed frames. STREAM rather than SEQPACKET or DGRAM
// (bench/mailbox measures all three):
//  - many messages per syscall on both sides (writev/read of 256 KiB), which
//    is what reaches millions of messages per second; DGRAM and SEQPACKET cost
//    one syscall per message (0.3-0.6 M msgs/s here);
//  - bodies of any size (DGRAM/SEQPACKET are capped by the socket buffer);
//  - a full receiver blocks or fails the sender (the socket buffer is the
//    bound), where DGRAM queues just max_dgram_qlen=10 messages;
//  - SO_PEERCRED names the sending pid of each connection, so a sender's
//    identity in an envelope is checked, not trusted.
//
// The API is per process and not thread-safe: like a BEAM process, one
// thread owns the mailbox. A forked child never uses its parent's mailbox or
// connections (spawn() gives it its own; a plain fork() drops them).
namespace otpd::runtime {

using core::deadline;
using core::Result;
using std::chrono::milliseconds;

// Where to send: a pid or a registered name.
class address {
 public:
  address(pid_t pid) : v_(pid) {}                       // NOLINT(google-explicit-constructor)
  address(std::string name) : v_(std::move(name)) {}    // NOLINT
  address(const char* name) : v_(std::string(name)) {}  // NOLINT
  [[nodiscard]] bool is_pid() const { return v_.index() == 0; }
  [[nodiscard]] pid_t pid() const { return std::get<0>(v_); }
  [[nodiscard]] const std::string& name() const { return std::get<1>(v_); }
  [[nodiscard]] std::string to_string() const;

 private:
  std::variant<pid_t, std::string> v_;
};

struct init_options {
  std::string runtime_dir;  // empty: core::default_runtime_dir() ($OTPD_RUNTIME_DIR...)
  std::string name;         // empty: $OTPD_NAME if set; registers the mailbox under it
};

// Opens this process's mailbox (idempotent). Other calls init() on demand
// with default options.
Result<void> init(const init_options& options = {});
// Closes the mailbox, unregisters names, kills and reaps children still
// linked to us. Called at normal exit too.
void shutdown() noexcept;
[[nodiscard]] pid_t self() noexcept;
[[nodiscard]] const std::string& runtime_dir();

// --- sending ----------------------------------------------------------------
// Default time a send waits for a full receiver before failing with
// errc::timeout (the message is then not delivered).
inline constexpr milliseconds default_send_timeout{5000};

// Sends a message and returns once it is in the receiver's socket buffer.
// Errors: noproc (no such process or name), timeout (the receiver is full),
// too_large. On error the message was not delivered.
Result<void> send_message(const address& to, kind k, const ref& r, std::string_view body,
                          deadline until = deadline::after(default_send_timeout));
template <class T>
Result<void> send(const address& to, const T& term) {
  return send_message(to, kind::user, {}, pack(term));
}

// Batched sends: post() queues the frame in user space; queued frames go out
// in one write when 64 KiB accumulate, on flush(), and before this process
// blocks in receive(). Order with send() to the same receiver is kept.
Result<void> post_message(const address& to, kind k, const ref& r, std::string_view body);
// The same, for a caller that knows how long its post may wait when it has
// to (64 KiB queued, or a full ring): until, instead of default_send_timeout.
Result<void> post_message(const address& to, kind k, const ref& r, std::string_view body,
                          deadline until);
template <class T>
Result<void> post(const address& to, const T& term) {
  return post_message(to, kind::user, {}, pack(term));
}
Result<void> flush(deadline until = deadline::after(default_send_timeout));

// --- transports ---------------------------------------------------------------
// How a connection between two mailboxes carries its messages. Between local
// processes a sender asks its receiver for a shared-memory ring (one per
// direction of each pair, handed over the Unix socket, which stays for
// credentials, wake-ups and bodies over 64 KiB); either side can keep to the
// socket alone: $OTPD_MAILBOX_TRANSPORT=socket, or set_transport(). Order and
// every other guarantee are the same on both.
enum class transport : std::uint8_t {
  none,    // no connection (yet)
  socket,  // frames on the Unix socket only
  ring,    // the shared-memory ring, the socket beside it
};
[[nodiscard]] const char* to_string(transport t) noexcept;
// For connections opened from now on (existing ones keep theirs), in this
// process and the children it forks after this call.
void set_transport(transport t);
// The transport of our connection to pid's mailbox, and of pid's to ours.
// A ring is set up during the first messages: socket until then.
[[nodiscard]] transport transport_to(pid_t pid);
[[nodiscard]] transport transport_from(pid_t pid);

// --- receiving --------------------------------------------------------------
using predicate = std::function<bool(const message&)>;

// The first queued message (or the first that matches pred), removing it
// from the queue; messages that do not match stay queued, in order.
// Error errc::timeout when none arrives in time.
Result<message> receive(deadline until = deadline::never());
Result<message> receive(const predicate& pred, deadline until = deadline::never());
inline Result<message> receive(milliseconds timeout) {
  return receive(deadline::after(timeout));
}
inline Result<message> receive(const predicate& pred, milliseconds timeout) {
  return receive(pred, deadline::after(timeout));
}
// The first message carrying ref r (a reply, a task result, a DOWN of that monitor).
Result<message> receive_ref(const ref& r, deadline until);

// Messages queued in this process (after taking in what the sockets hold).
[[nodiscard]] std::size_t queued();
// Bytes this process holds in its connections' receive blocks: a block grown
// for a large message goes back to its usual size once that message is
// taken in and no body views it (docs/SECURITY.md).
[[nodiscard]] std::size_t receive_buffer_bytes();

// For event loops (libuv, epoll): a fd that becomes readable when the mailbox
// has work; then call dispatch_pending() and receive with deadline::after(0).
[[nodiscard]] int event_fd();
void dispatch_pending();

// How long receive() polls before it sleeps: a cross-core wake-up of a
// sleeping vCPU costs tens of µs here, a brief poll a few µs. Adapts between
// 0 and the maximum (default 50 µs; $OTPD_SPIN_US overrides; 0 disables).
void set_max_spin(std::chrono::microseconds max);

// --- timers -------------------------------------------------------------------
// Process.send_after to self: after `after`, a kind::user message with this
// ref and body lands in our own mailbox (in order with everything else).
ref start_timer(milliseconds after, std::string_view body);
template <class T>
ref send_after(milliseconds after, const T& term) {
  return start_timer(after, pack(term));
}
// True if the timer was still pending (its message will not come).
bool cancel_timer(const ref& r);

// --- names ------------------------------------------------------------------
// Registers this process's mailbox under name (replacing a stale holder:
// names follow restarted processes). Names are [A-Za-z0-9_.-]{1,64}.
Result<void> register_name(const std::string& name);
Result<void> unregister_name(const std::string& name);
// The pid registered under name; errc::noproc when none or dead.
Result<pid_t> whereis(const std::string& name);

// --- monitors and links -----------------------------------------------------
// Monitors pid: one message of kind::down with this ref arrives when it ends
// (reason: exact for our own children; for others the node's otpd knows it,
// else exit_kind::unknown). A pid that does not exist gives DOWN noproc.
ref monitor(pid_t pid);
ref monitor(const address& to);
// Stops monitoring; with flush, removes a DOWN for ref already queued.
void demonitor(const ref& r, bool flush = true);

// Links with pid both ways: when either ends abnormally, the other ends with
// the same reason, unless it traps exits, in which case it receives a
// kind::exit message. A normal exit of a peer kills nobody. Exit signals are
// acted on at the next mailbox operation of the linked process (send,
// receive, dispatch_pending), like a BEAM process that checks its signals.
//
// Where the reason comes from: our own child's is exact (waitid). For a peer
// that is not our child, only its parent can reap it, so it is read from
// its zombie's /proc/<pid>/stat while the parent has not reaped it yet (same
// euid, or we are root), else asked of the node's otpd (the parent of every
// worker it runs). When none of these knows, the reason is
// exit_kind::unknown, and the rule is: an unknown end does not kill a
// non-trapping partner (it is logged), because it may have been a normal
// exit, and a normal exit never propagates; a trapping partner gets its
// kind::exit with reason unknown and decides. One exception: an unknown
// end of the process that was our parent when we linked to it does
// propagate, as its every end does anyway (shutdown() kills the children
// linked to it, even at a normal exit).
Result<void> link(pid_t pid);
void unlink(pid_t pid);
void trap_exit(bool on);
[[nodiscard]] bool trapping_exits();

// Ends this process now with reason (exit code, or re-raising the signal).
[[noreturn]] void exit_self(const core::exit_reason& reason);

// --- spawning -----------------------------------------------------------------
struct spawn_options {
  bool link = false;
  bool monitor = false;          // the DOWN's ref is returned in spawned_process::monitor_ref
  bool kill_with_parent = true;  // PR_SET_PDEATHSIG SIGKILL
  std::string name;              // register the child's mailbox under this name
};
struct spawned_process {
  pid_t pid = -1;
  ref monitor_ref;
};

// Runs fn in a forked child with its own mailbox (ready before spawn
// returns, so messages can be sent to it at once). fn's return value is the
// child's exit code; an escaping exception is logged and exits with code 70.
// The child is reaped by this process (no zombies), and monitored/linked as asked.
Result<spawned_process> spawn(std::function<int()> fn, const spawn_options& options = {});

// Executes a program as a child of this process (core::spawn: exec errors
// are reported, not lost), with OTPD_RUNTIME_DIR set so it joins the node.
// If wait_ready, passes OTPD_READY_FD and waits for its readiness line.
struct exec_options {
  spawn_options spawn;
  std::vector<std::string> env;  // extra KEY=VALUE
  bool wait_ready = false;
  milliseconds ready_timeout{10000};
};
Result<spawned_process> spawn_exec(const std::vector<std::string>& argv,
                                   const exec_options& options = {});

// Sends a signal to a process (SIGKILL: OTP's exit(Pid, kill)).
Result<void> kill(pid_t pid, int sig);

// Readiness for programs started by otpd with `readiness: notify` (or by
// spawn_exec): writes the newline to $OTPD_READY_FD once; a no-op without it.
void notify_ready() noexcept;

}  // namespace otpd::runtime

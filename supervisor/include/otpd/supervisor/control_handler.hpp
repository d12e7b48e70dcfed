#pragma once

// The control socket's requests without the socket: one request line in, one
// reply out, against a control_executor that does what the commands ask.
// The daemon's executor acts on its tree; a test's or a fuzzer's only
// records. Connections, framing and caps are the control server's
// (supervisor/src/control_server.cpp); the messages are otpd::protocol's.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <otpd/protocol/control.hpp>

namespace otpd::supervisor {

// Who sent a request, and what its connection has become.
struct control_peer {
  std::uint64_t id = 0;                // the connection; 0: otpd itself (SIGHUP's reload)
  uid_t uid = static_cast<uid_t>(-1);  // SO_PEERCRED, taken at accept
  pid_t pid = -1;
  // Accepted over the connection cap, in the reserve kept for one-shot
  // clients (otpctl, the runtime's exit-reason query): one reply, then the
  // connection is closed; it may not subscribe or monitor.
  bool one_shot = false;
  bool subscribed = false;   // "events" with follow
  std::size_t monitors = 0;  // "monitor" requests still waiting for their down event
  bool hang_up = false;      // no reply could be made at all: close the connection
};

// What the commands do, one call per decoded request. Each returns its reply
// (null: none) and may throw anything: answer_control_request turns that into
// an error reply.
class control_executor {
 public:
  virtual ~control_executor() = default;

  virtual protocol::json ping() = 0;
  virtual protocol::json status(const protocol::status_request& r) = 0;
  virtual protocol::json child(const protocol::child_request& r) = 0;
  virtual protocol::json kill(const protocol::kill_request& r) = 0;
  virtual protocol::json start_child(const protocol::start_child_request& r) = 0;
  virtual protocol::json terminate_child(const protocol::terminate_child_request& r) = 0;
  virtual protocol::json reload(bool dry_run) = 0;
  virtual protocol::json shutdown() = 0;
  virtual protocol::json reopen_logs() = 0;
  virtual protocol::json events(control_peer& p, const protocol::events_request& r) = 0;
  virtual protocol::json whereis(const protocol::whereis_request& r) = 0;
  virtual protocol::json monitor(control_peer& p, const protocol::monitor_request& r) = 0;
  virtual protocol::json exit_reason_of(const protocol::exit_reason_request& r) = 0;
  // reexec: the daemon's own; any other executor refuses it.
  virtual protocol::json reexec(control_peer& /*p*/, const protocol::reexec_request& /*r*/) {
    return protocol::error_reply{"reexec is not supported here"}.to_json();
  }
  // A command that changes something (control_command_changes) has been
  // answered, or refused: the audit trail. request is the parsed request,
  // reply what the peer gets.
  virtual void audit(const control_peer& p, const protocol::json& request,
                     const protocol::json& reply) = 0;

 protected:
  control_executor() = default;
  control_executor(const control_executor&) = default;
  control_executor& operator=(const control_executor&) = default;
  control_executor(control_executor&&) = default;
  control_executor& operator=(control_executor&&) = default;
};

// Whether the command cmd changes the node (start, stop, restart, kill,
// start-child, terminate-child, reload, shutdown, reopen-logs, reexec): those are
// audited. Reads (status, events, whereis, monitor, exit-reason, ping) are
// not: the runtime asks exit-reason at every DOWN, and a trail of reads
// would drown the changes.
[[nodiscard]] bool control_command_changes(std::string_view cmd) noexcept;

// Answers one request line (without its newline). Never throws: a line that
// is not a JSON object with a string "cmd", a field of the wrong type, an
// unknown command, a subscription from a one-shot peer, and any exception of
// the executor (std::bad_alloc included) become an error reply. Null when
// the request gets no reply (an empty line), or when not even an error reply
// could be made (p.hang_up is then set: the caller closes the connection).
[[nodiscard]] protocol::json answer_control_request(control_executor& ex, control_peer& p,
                                                    std::string_view line) noexcept;

}  // namespace otpd::supervisor

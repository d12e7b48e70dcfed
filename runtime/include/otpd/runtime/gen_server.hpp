#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/result.hpp>
#include <otpd/runtime/message.hpp>
#include <otpd/runtime/process.hpp>

// GenServer: a process that serves calls and casts from its mailbox, with
// OTP's callbacks. Start one in a forked child (start_server) or run one as
// the main loop of a worker program (run_server).
namespace otpd::runtime {

// Who made a call: reply to it with reply(from, ...).
struct from {
  pid_t pid = 0;
  runtime::ref ref;
};

class gen_server {
 public:
  gen_server() = default;
  virtual ~gen_server() = default;
  gen_server(const gen_server&) = delete;
  gen_server& operator=(const gen_server&) = delete;
  gen_server(gen_server&&) = delete;
  gen_server& operator=(gen_server&&) = delete;

  // Runs before the server is started; an error fails start_server.
  virtual core::Result<void> init() { return {}; }
  // Return the reply body (pack(...)) to answer now, or std::nullopt to
  // answer later with reply(caller, ...).
  virtual std::optional<std::string> handle_call(const message& request, const from& caller) = 0;
  virtual void handle_cast(const message& /*request*/) {}
  // Everything else: plain messages, DOWN, EXIT. Unknown ones are logged.
  virtual void handle_info(const message& msg);
  // On an orderly stop (stop_server, SIGTERM, stop() from a callback).
  virtual void terminate(const core::exit_reason& /*reason*/) {}

 protected:
  // Ends the server after the current callback, with reason.
  void stop(core::exit_reason reason = core::exit_reason::normal()) { stop_ = reason; }

 private:
  friend int run_server(gen_server& server);
  // As run_server, reporting init's outcome on ready_fd ("\n" or "E<why>").
  int run_server_with_ready(gen_server& server, int ready_fd);
  friend int run_server_with_ready(gen_server& server, int ready_fd);
  std::optional<core::exit_reason> stop_;
};

// A reply waits at most this long for room in a caller's mailbox, and not at
// all for a caller that made a reply wait that long within
// slow_caller_memory: a caller that never reads costs the server one
// reply_timeout per slow_caller_memory, not one send timeout per reply.
// A reply not delivered is an errc::timeout (logged by the server loop).
inline constexpr std::chrono::milliseconds reply_timeout{1000};
inline constexpr std::chrono::milliseconds slow_caller_memory{10000};

// Answers a call whose reply was deferred (and the server loop's own
// replies): errc::timeout when the caller's mailbox stayed full (see
// reply_timeout), errc::noproc when it is gone.
core::Result<void> reply(const from& caller, std::string_view body);
template <class T>
core::Result<void> reply_with(const from& caller, const T& value) {
  return reply(caller, pack(value));
}

struct server_options {
  std::string name;   // register the server under this name
  bool link = false;  // link it to the caller
  std::chrono::milliseconds init_timeout{5000};
};

// Starts factory()'s server in a forked child and returns its pid once
// init() succeeded; errc::start_failed (init failed, child reaped) or
// errc::timeout otherwise.
core::Result<pid_t> start_server(std::function<std::unique_ptr<gen_server>()> factory,
                                 const server_options& options = {});

// Runs server in this process: init, readiness ($OTPD_READY_FD), then
// messages until it stops; SIGTERM stops it in order (terminate(shutdown)).
// Returns the exit code for main().
int run_server(gen_server& server);
// As run_server, reporting init's outcome on ready_fd ("\n" or "E<why>").
int run_server_with_ready(gen_server& server, int ready_fd);

// Calls server: the reply's body, or errc::noproc (no such server),
// errc::crashed (it died before replying; *why says how), errc::timeout.
// The server is monitored for the call, so a dead server errors at once.
core::Result<message> call_message(
    const address& server, std::string_view body,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
    core::exit_reason* why = nullptr);
template <class Reply, class Request>
core::Result<Reply> call(const address& server, const Request& request,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                         core::exit_reason* why = nullptr) {
  auto m = call_message(server, pack(request), timeout, why);
  if (!m) {
    return m.error();
  }
  return m->template as<Reply>();
}
template <class Request>
core::Result<void> cast(const address& server, const Request& request) {
  return send_message(server, kind::cast, {}, pack(request));
}

// A call in flight (OTP's gen_server:send_request / receive_response): make
// many calls, then collect the replies, e.g. to keep several servers busy.
struct request_id {
  pid_t server = 0;
  runtime::ref ref;  // also the ref of the monitor on server
};
// Monitors server and sends the request. Errors: noproc.
core::Result<request_id> send_request(const address& server, std::string_view body);
// The reply to id, or errc::crashed / errc::noproc (the server died; *why
// says how) or errc::timeout (the request is then abandoned: a late reply is
// dropped on arrival). Ends the monitor in every case but timeout with keep.
core::Result<message> receive_response(const request_id& id, deadline until,
                                       core::exit_reason* why = nullptr);
// Whether m is the reply or the DOWN that answers id (for receive(pred)
// over several requests; pass m to take_response).
[[nodiscard]] bool answers(const message& m, const request_id& id);
// Turns a message for which answers() held into receive_response's result.
core::Result<message> take_response(message&& m, const request_id& id,
                                    core::exit_reason* why = nullptr);

// Asks server to stop (terminate(shutdown)) and waits until it has ended.
core::Result<void> stop_server(const address& server,
                               std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// Agent: state in its own process with get and named updates (the
// training's SharedState). The update functions are given at start: the
// agent's process is a fork of the caller, so it has them.
template <class State>
class agent {
 public:
  using update_fn = std::function<void(State&)>;

  static core::Result<agent> start(State initial, std::map<std::string, update_fn> updates = {},
                                   const server_options& options = {}) {
    auto pid = start_server(
        [initial = std::move(initial), updates = std::move(updates)]() {
          return std::unique_ptr<gen_server>(new server(initial, updates));
        },
        options);
    if (!pid) {
      return pid.error();
    }
    return agent(*pid);
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  core::Result<State> get(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    return call<State>(pid_, std::string("get"), timeout);
  }
  // Applies the named update in the agent and returns the new state.
  core::Result<State> update(const std::string& name,
                             std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    return call<State>(pid_, "update:" + name, timeout);
  }
  core::Result<void> put(const State& s) { return cast(pid_, s); }
  core::Result<void> stop() { return stop_server(pid_); }

 private:
  explicit agent(pid_t pid) : pid_(pid) {}

  class server final : public gen_server {
   public:
    server(State s, std::map<std::string, update_fn> u)
        : state_(std::move(s)), updates_(std::move(u)) {}
    std::optional<std::string> handle_call(const message& req, const from&) override {
      auto what = req.as<std::string>();
      if (what && *what == "get") {
        return pack(state_);
      }
      if (what && what->rfind("update:", 0) == 0) {
        auto it = updates_.find(what->substr(7));
        if (it != updates_.end()) {
          it->second(state_);
        }
        return pack(state_);
      }
      return pack(state_);
    }
    void handle_cast(const message& req) override {
      if (auto s = req.as<State>(); s) {
        state_ = std::move(*s);
      }
    }

   private:
    State state_;
    std::map<std::string, update_fn> updates_;
  };

  pid_t pid_;
};

}  // namespace otpd::runtime

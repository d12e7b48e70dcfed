// The control socket's command table: a request's "cmd" to the decoder of
// its otpd::protocol request and the executor's call, plus the rules every
// request obeys whoever executes it (see control_handler.hpp).
#include <exception>
#include <new>
#include <string>
#include <unordered_map>

#include <otpd/supervisor/control_handler.hpp>

namespace otpd::supervisor {

namespace proto = otpd::protocol;
using json = proto::json;

namespace {

using call = json (*)(control_executor&, control_peer&, const json&);

// The reply to a one-shot peer that asks for a stream (docs/PROTOCOL.md).
constexpr const char* no_slot =
    "too many control connections: events with follow and monitor need a free slot; "
    "try again later";

// One entry per command and alias; each decodes its request (which throws
// json::exception on a field of the wrong type) and calls the executor.
const std::unordered_map<std::string_view, call>& commands() {
  static const std::unordered_map<std::string_view, call> table = [] {
    std::unordered_map<std::string_view, call> t;
    t[proto::ping_request::cmd] = [](control_executor& ex, control_peer&, const json&) {
      return ex.ping();
    };
    auto status = [](control_executor& ex, control_peer&, const json& j) {
      return ex.status(proto::status_request::from_json(j));
    };
    t[proto::status_request::cmd] = status;
    t[proto::status_request::alias] = status;
    using verb = proto::child_request::verb;
    for (verb v : {verb::start, verb::stop, verb::restart}) {
      t[proto::child_request::cmd_of(v)] = [](control_executor& ex, control_peer&, const json& j) {
        return ex.child(proto::child_request::from_json(j));
      };
    }
    t[proto::kill_request::cmd] = [](control_executor& ex, control_peer&, const json& j) {
      return ex.kill(proto::kill_request::from_json(j));
    };
    t[proto::start_child_request::cmd] = [](control_executor& ex, control_peer&, const json& j) {
      return ex.start_child(proto::start_child_request::from_json(j));
    };
    t[proto::terminate_child_request::cmd] = [](control_executor& ex, control_peer&,
                                                const json& j) {
      return ex.terminate_child(proto::terminate_child_request::from_json(j));
    };
    t[proto::reload_request::cmd] = [](control_executor& ex, control_peer&, const json& j) {
      return ex.reload(proto::reload_request::from_json(j).dry_run);
    };
    t[proto::shutdown_request::cmd] = [](control_executor& ex, control_peer&, const json&) {
      return ex.shutdown();
    };
    t[proto::reopen_logs_request::cmd] = [](control_executor& ex, control_peer&, const json&) {
      return ex.reopen_logs();
    };
    t[proto::events_request::cmd] = [](control_executor& ex, control_peer& p, const json& j) {
      auto r = proto::events_request::from_json(j);
      if (r.follow && p.one_shot) {
        return proto::error_reply{no_slot}.to_json();
      }
      return ex.events(p, r);
    };
    t[proto::whereis_request::cmd] = [](control_executor& ex, control_peer&, const json& j) {
      return ex.whereis(proto::whereis_request::from_json(j));
    };
    t[proto::monitor_request::cmd] = [](control_executor& ex, control_peer& p, const json& j) {
      auto r = proto::monitor_request::from_json(j);
      if (p.one_shot) {
        return proto::error_reply{no_slot}.to_json();
      }
      return ex.monitor(p, r);
    };
    t[proto::exit_reason_request::cmd] = [](control_executor& ex, control_peer&, const json& j) {
      return ex.exit_reason_of(proto::exit_reason_request::from_json(j));
    };
    t[proto::reexec_request::cmd] = [](control_executor& ex, control_peer& p, const json& j) {
      return ex.reexec(p, proto::reexec_request::from_json(j));
    };
    return t;
  }();
  return table;
}

json error(const std::string& message) {
  return proto::error_reply{message}.to_json();
}

// The reply when the handling itself failed; null (and p.hang_up) when even
// that cannot be built, e.g. out of memory again.
json failure_reply(control_peer& p, const char* prefix, const char* what) noexcept {
  try {
    return error(std::string(prefix) + what);
  } catch (...) {
    p.hang_up = true;
    return nullptr;
  }
}

}  // namespace

bool control_command_changes(std::string_view cmd) noexcept {
  using verb = proto::child_request::verb;
  return cmd == proto::child_request::cmd_of(verb::start) ||
         cmd == proto::child_request::cmd_of(verb::stop) ||
         cmd == proto::child_request::cmd_of(verb::restart) || cmd == proto::kill_request::cmd ||
         cmd == proto::start_child_request::cmd || cmd == proto::terminate_child_request::cmd ||
         cmd == proto::reload_request::cmd || cmd == proto::shutdown_request::cmd ||
         cmd == proto::reopen_logs_request::cmd || cmd == proto::reexec_request::cmd;
}

json answer_control_request(control_executor& ex, control_peer& p, std::string_view line) noexcept {
  if (line.empty()) {
    return nullptr;
  }
  json req;
  std::string cmd;
  try {
    req = proto::parse_json(line);
    if (req.is_discarded() || !req.is_object() || !req.contains(proto::field::cmd) ||
        !req[proto::field::cmd].is_string()) {
      return error("malformed request: expected {\"cmd\": ...}");
    }
    cmd = proto::command_of(req);
  } catch (const std::exception& e) {
    // Only allocation can fail here (parse does not throw with allow_exceptions off).
    return failure_reply(p, "unable to handle request: ", e.what());
  }
  json ans;
  try {
    auto it = commands().find(cmd);
    ans = it == commands().end() ? error("unknown command: " + cmd) : it->second(ex, p, req);
  } catch (const json::exception& e) {
    ans = failure_reply(p, "bad request: ", e.what());
  } catch (const std::exception& e) {
    ans = failure_reply(p, "unable to handle request: ", e.what());
  } catch (...) {
    ans = failure_reply(p, "unable to handle request: ", "unknown exception");
  }
  if (control_command_changes(cmd)) {
    try {
      ex.audit(p, req, ans);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the reply matters more than its trail
    }
  }
  return ans;
}

}  // namespace otpd::supervisor

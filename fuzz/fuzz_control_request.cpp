// The control socket's request handler (supervisor::answer_control_request)
// on arbitrary bytes as a request line, against a fake executor with no side
// effects: always exactly one reply, an object with "ok", that the control
// server can write out; never a crash, a throw or a leak.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <otpd/supervisor/control_handler.hpp>

namespace {

namespace proto = otpd::protocol;
using json = proto::json;
using otpd::supervisor::control_peer;

// Replies built from the decoded requests, so the encoders see what the
// decoders let through (any string, any number).
class fake_executor final : public otpd::supervisor::control_executor {
 public:
  json ping() override { return proto::pid_reply{1}.to_json(); }
  json status(const proto::status_request& /*r*/) override {
    proto::status_reply s;
    s.root.id = "root";
    s.root.path = "/";
    s.root.children.push_back(proto::node_status{.id = "a", .path = "a", .state = "running"});
    return s.to_json();
  }
  json child(const proto::child_request& r) override {
    return r.id.size() % 2 == 0 ? proto::ok_reply{}.to_json()
                                : proto::error_reply{"no such child: " + r.id}.to_json();
  }
  json kill(const proto::kill_request& r) override {
    if (r.signal.index() == 2) {
      return proto::error_reply{"unknown signal " + std::get<std::string>(r.signal)}.to_json();
    }
    return proto::pid_reply{2}.to_json();
  }
  json start_child(const proto::start_child_request& r) override {
    std::string path = r.supervisor;
    for (const auto& a : r.args) {
      path += "/" + a;
    }
    return proto::start_child_reply{path}.to_json();
  }
  json terminate_child(const proto::terminate_child_request& r) override {
    return proto::error_reply{r.supervisor + " " + r.id}.to_json();
  }
  json reload(bool /*dry_run*/) override { return proto::reload_reply{{"a"}, {}, {"b"}}.to_json(); }
  json shutdown() override { return proto::ok_reply{}.to_json(); }
  json reopen_logs() override { return proto::reopen_logs_reply{3}.to_json(); }
  json events(control_peer& p, const proto::events_request& r) override {
    p.subscribed = r.follow;
    proto::events_reply e;
    e.recent.push_back(proto::lifecycle_event{.event = "started", .path = "a", .ts_ms = 1});
    return e.to_json();
  }
  json whereis(const proto::whereis_request& r) override {
    return r.name.empty() ? proto::error_reply{"no such name"}.to_json()
                          : proto::pid_reply{3}.to_json();
  }
  json monitor(control_peer& p, const proto::monitor_request& r) override {
    ++p.monitors;
    return proto::pid_reply{r.pid.value_or(4)}.to_json();
  }
  json exit_reason_of(const proto::exit_reason_request& r) override {
    return proto::exit_reason_reply{r.pid, std::nullopt}.to_json();
  }
  void audit(const control_peer& /*p*/, const json& request, const json& reply) override {
    // What the daemon's audit reads: the command and the reply's outcome.
    audited += request.value(proto::field::cmd, std::string()).size();
    audited += reply.is_object() && proto::is_ok(reply) ? 1 : 0;
  }
  std::size_t audited = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  fake_executor ex;
  control_peer peer;
  peer.id = 1;
  peer.one_shot = size % 3 == 0;  // both kinds of connection
  json reply = otpd::supervisor::answer_control_request(ex, peer, line);
  if (line.empty()) {
    if (!reply.is_null()) {
      std::abort();  // an empty line is no request
    }
    return 0;
  }
  if (!reply.is_object() || !reply.contains(proto::field::ok) || peer.hang_up) {
    std::abort();  // every request gets exactly one reply
  }
  // The server writes it as one line; strings the decoders let through must
  // not make that throw.
  std::string out = reply.dump(-1, ' ', false, json::error_handler_t::replace);
  if (out.find('\n') != std::string::npos) {
    std::abort();
  }
  return 0;
}

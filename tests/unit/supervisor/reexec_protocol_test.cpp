// The reexec request and reply, and status's reexec fields, in the control
// protocol; the command table's rules for it (audited; refused by any
// executor but the daemon's).
#include <string>

#include <gtest/gtest.h>

#include <otpd/supervisor/control_handler.hpp>

namespace otpd::supervisor {
namespace {

namespace proto = otpd::protocol;
using json = proto::json;

// Answers nothing but reexec's default (and records audits).
class plain_executor final : public control_executor {
 public:
  json ping() override { return nullptr; }
  json status(const proto::status_request& /*r*/) override { return nullptr; }
  json child(const proto::child_request& /*r*/) override { return nullptr; }
  json kill(const proto::kill_request& /*r*/) override { return nullptr; }
  json start_child(const proto::start_child_request& /*r*/) override { return nullptr; }
  json terminate_child(const proto::terminate_child_request& /*r*/) override { return nullptr; }
  json reload(bool /*dry_run*/) override { return nullptr; }
  json shutdown() override { return nullptr; }
  json reopen_logs() override { return nullptr; }
  json events(control_peer& /*p*/, const proto::events_request& /*r*/) override { return nullptr; }
  json whereis(const proto::whereis_request& /*r*/) override { return nullptr; }
  json monitor(control_peer& /*p*/, const proto::monitor_request& /*r*/) override {
    return nullptr;
  }
  json exit_reason_of(const proto::exit_reason_request& /*r*/) override { return nullptr; }
  void audit(const control_peer& /*p*/, const json& request, const json& reply) override {
    audits += request.value("cmd", std::string()) + (proto::is_ok(reply) ? " ok;" : " no;");
  }
  std::string audits;
};

TEST(ReexecProtocol, RequestAndReplyRoundTrip) {
  EXPECT_EQ(proto::reexec_request{}.to_json(), json::parse(R"({"cmd":"reexec"})"));
  auto r =
      proto::reexec_request::from_json(json::parse(R"({"cmd":"reexec","binary":"/usr/bin/otpd"})"));
  EXPECT_EQ(r.binary, "/usr/bin/otpd");
  EXPECT_EQ(proto::reexec_request::from_json(r.to_json()).binary, "/usr/bin/otpd");
  auto reply = proto::reexec_reply::from_json(proto::reexec_reply{"/usr/bin/otpd", 42}.to_json());
  EXPECT_EQ(reply.binary, "/usr/bin/otpd");
  EXPECT_EQ(reply.pid, 42);
  EXPECT_TRUE(proto::is_ok(proto::reexec_reply{"/x", 1}.to_json()));
}

TEST(ReexecProtocol, StatusSaysTheBinaryAndHowManyReexecs) {
  proto::status_reply s;
  s.node = "n";
  s.otpd_pid = 7;
  s.runtime_dir = "/run/otpd";
  s.binary = "/usr/bin/otpd";
  s.reexecs = 3;
  json j = s.to_json();
  EXPECT_EQ(j["binary"], "/usr/bin/otpd");
  EXPECT_EQ(j["reexecs"], 3);
  auto back = proto::status_reply::from_json(j);
  EXPECT_EQ(back.binary, "/usr/bin/otpd");
  EXPECT_EQ(back.reexecs, 3u);
  // An older otpd's status has neither: none, 0.
  j.erase("binary");
  j.erase("reexecs");
  back = proto::status_reply::from_json(j);
  EXPECT_EQ(back.binary, "");
  EXPECT_EQ(back.reexecs, 0u);
}

TEST(ReexecProtocol, AuditedAndRefusedByAnExecutorThatCannot) {
  plain_executor ex;
  control_peer p;
  p.id = 1;
  EXPECT_TRUE(control_command_changes("reexec"));
  json ans = answer_control_request(ex, p, R"({"cmd":"reexec"})");
  EXPECT_FALSE(proto::is_ok(ans));
  EXPECT_EQ(ans.value("error", std::string()), "reexec is not supported here");
  ans = answer_control_request(ex, p, R"({"cmd":"reexec","binary":5})");
  EXPECT_NE(ans.value("error", std::string()).find("bad request"), std::string::npos) << ans;
  EXPECT_EQ(ex.audits, "reexec no;reexec no;");
}

}  // namespace
}  // namespace otpd::supervisor

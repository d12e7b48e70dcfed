// answer_control_request without a daemon: the rules every request obeys
// (one reply, an error for anything that fails, one-shot peers cannot
// subscribe, changes are audited) against an executor that records.
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/supervisor/control_handler.hpp>

namespace otpd::supervisor {
namespace {

namespace proto = otpd::protocol;
using json = proto::json;

class recording_executor final : public control_executor {
 public:
  json ping() override { return proto::pid_reply{1}.to_json(); }
  json status(const proto::status_request& /*r*/) override {
    throw std::runtime_error("status is broken");
  }
  json child(const proto::child_request& r) override {
    calls.push_back("child " + r.id);
    return proto::ok_reply{}.to_json();
  }
  json kill(const proto::kill_request& /*r*/) override { throw std::bad_alloc(); }
  json start_child(const proto::start_child_request& /*r*/) override { return nullptr; }
  json terminate_child(const proto::terminate_child_request& /*r*/) override { return nullptr; }
  json reload(bool /*dry_run*/) override { return proto::error_reply{"bad config"}.to_json(); }
  json shutdown() override { return proto::ok_reply{}.to_json(); }
  json reopen_logs() override { return proto::reopen_logs_reply{0}.to_json(); }
  json events(control_peer& p, const proto::events_request& r) override {
    p.subscribed = r.follow;
    return proto::events_reply{}.to_json();
  }
  json whereis(const proto::whereis_request& /*r*/) override { throw 42; }  // NOLINT
  json monitor(control_peer& p, const proto::monitor_request& /*r*/) override {
    ++p.monitors;
    return proto::pid_reply{2}.to_json();
  }
  json exit_reason_of(const proto::exit_reason_request& r) override {
    return proto::exit_reason_reply{r.pid, std::nullopt}.to_json();
  }
  void audit(const control_peer& p, const json& request, const json& reply) override {
    audits.push_back(request.value("cmd", std::string()) + " " + std::to_string(p.uid) + " " +
                     (proto::is_ok(reply) ? "ok" : "no"));
  }
  std::vector<std::string> calls;
  std::vector<std::string> audits;
};

std::string error_of(const json& j) {
  return j.is_object() ? j.value("error", std::string()) : std::string("<not an object>");
}

TEST(ControlHandler, EveryFailureIsAnErrorReply) {
  recording_executor ex;
  control_peer p;
  p.id = 1;
  EXPECT_TRUE(answer_control_request(ex, p, "").is_null());
  EXPECT_EQ(error_of(answer_control_request(ex, p, "nope")).rfind("malformed request", 0), 0u);
  EXPECT_EQ(error_of(answer_control_request(ex, p, R"({"cmd":1})")).rfind("malformed", 0), 0u);
  EXPECT_EQ(
      error_of(answer_control_request(ex, p, R"({"cmd":"stop","id":[]})")).rfind("bad request", 0),
      0u);
  EXPECT_EQ(error_of(answer_control_request(ex, p, R"({"cmd":"x"})")), "unknown command: x");
  EXPECT_EQ(error_of(answer_control_request(ex, p, R"({"cmd":"status"})")),
            "unable to handle request: status is broken");
  EXPECT_EQ(error_of(answer_control_request(ex, p, R"({"cmd":"kill","id":"a"})"))
                .rfind("unable to handle request: ", 0),
            0u);  // std::bad_alloc
  EXPECT_EQ(error_of(answer_control_request(ex, p, R"({"cmd":"whereis","name":"a"})")),
            "unable to handle request: unknown exception");
  EXPECT_FALSE(p.hang_up);
  EXPECT_EQ(answer_control_request(ex, p, R"({"cmd":"ping"})")["ok"], true);
}

TEST(ControlHandler, OneShotPeersCannotSubscribeOrMonitor) {
  recording_executor ex;
  control_peer p;
  p.id = 1;
  p.one_shot = true;
  EXPECT_NE(error_of(answer_control_request(ex, p, R"({"cmd":"events"})")).find("free slot"),
            std::string::npos);
  EXPECT_NE(
      error_of(answer_control_request(ex, p, R"({"cmd":"monitor","pid":3})")).find("free slot"),
      std::string::npos);
  EXPECT_FALSE(p.subscribed);
  EXPECT_EQ(p.monitors, 0u);
  // The recent events without follow are a plain request.
  EXPECT_EQ(answer_control_request(ex, p, R"({"cmd":"events","follow":false})")["ok"], true);
  p.one_shot = false;
  EXPECT_EQ(answer_control_request(ex, p, R"({"cmd":"events"})")["ok"], true);
  EXPECT_TRUE(p.subscribed);
}

TEST(ControlHandler, ChangesAreAuditedReadsAreNot) {
  recording_executor ex;
  control_peer p;
  p.id = 1;
  p.uid = 1000;
  (void)answer_control_request(ex, p, R"({"cmd":"status"})");
  (void)answer_control_request(ex, p, R"({"cmd":"stop","id":"a"})");
  (void)answer_control_request(ex, p, R"({"cmd":"reload"})");
  (void)answer_control_request(ex, p, R"({"cmd":"kill","id":"a"})");
  (void)answer_control_request(ex, p, R"({"cmd":"stop","id":5})");
  EXPECT_EQ(ex.audits, (std::vector<std::string>{"stop 1000 ok", "reload 1000 no", "kill 1000 no",
                                                 "stop 1000 no"}));
  EXPECT_EQ(ex.calls, (std::vector<std::string>{"child a"}));
  EXPECT_TRUE(control_command_changes("shutdown"));
  EXPECT_FALSE(control_command_changes("exit-reason"));
}

}  // namespace
}  // namespace otpd::supervisor

// Every control request, reply and event survives encode then decode, and
// encodes to the field names docs/PROTOCOL.md gives: renaming a field on one
// side only fails here.
#include <gtest/gtest.h>

#include <otpd/protocol/control.hpp>

namespace otpd::protocol {
namespace {

template <class T>
T round_trip(const T& v) {
  // Through the wire form: a JSON line.
  return T::from_json(json::parse(v.to_json().dump()));
}

TEST(ControlProtocol, CommandNamesAreTheWireNames) {
  EXPECT_EQ(command_of(ping_request{}.to_json()), "ping");
  EXPECT_EQ(command_of(status_request{}.to_json()), "status");
  EXPECT_EQ(command_of(status_request{true}.to_json()), "tree");
  EXPECT_EQ(command_of(child_request{child_request::verb::start, "a"}.to_json()), "start");
  EXPECT_EQ(command_of(child_request{child_request::verb::stop, "a"}.to_json()), "stop");
  EXPECT_EQ(command_of(child_request{child_request::verb::restart, "a"}.to_json()), "restart");
  EXPECT_EQ(command_of(kill_request{}.to_json()), "kill");
  EXPECT_EQ(command_of(start_child_request{}.to_json()), "start-child");
  EXPECT_EQ(command_of(terminate_child_request{}.to_json()), "terminate-child");
  EXPECT_EQ(command_of(reload_request{}.to_json()), "reload");
  EXPECT_EQ(command_of(shutdown_request{}.to_json()), "shutdown");
  EXPECT_EQ(command_of(reopen_logs_request{}.to_json()), "reopen-logs");
  EXPECT_EQ(command_of(events_request{}.to_json()), "events");
  EXPECT_EQ(command_of(whereis_request{}.to_json()), "whereis");
  EXPECT_EQ(command_of(monitor_request{}.to_json()), "monitor");
  EXPECT_EQ(command_of(exit_reason_request{}.to_json()), "exit-reason");
}

TEST(ControlProtocol, RequestsRoundTrip) {
  (void)round_trip(ping_request{});
  EXPECT_FALSE(round_trip(status_request{}).as_tree);
  EXPECT_TRUE(round_trip(status_request{true}).as_tree);
  (void)round_trip(reload_request{});
  (void)round_trip(shutdown_request{});
  (void)round_trip(reopen_logs_request{});
  for (auto v :
       {child_request::verb::start, child_request::verb::stop, child_request::verb::restart}) {
    auto c = round_trip(child_request{v, "web/api"});
    EXPECT_EQ(c.what, v);
    EXPECT_EQ(c.id, "web/api");
  }
  auto k = round_trip(kill_request{"db", 15});
  EXPECT_EQ(k.id, "db");
  EXPECT_EQ(std::get<int>(k.signal), 15);
  k = round_trip(kill_request{"db", std::string("TERM")});
  EXPECT_EQ(std::get<std::string>(k.signal), "TERM");
  k = round_trip(kill_request{"db", {}});
  EXPECT_TRUE(std::holds_alternative<std::monostate>(k.signal));
  auto sc = round_trip(start_child_request{"/pool", {"--port", "8080"}});
  EXPECT_EQ(sc.supervisor, "/pool");
  EXPECT_EQ(sc.args, (std::vector<std::string>{"--port", "8080"}));
  auto tc = round_trip(terminate_child_request{"/pool", "pool/worker-3"});
  EXPECT_EQ(tc.supervisor, "/pool");
  EXPECT_EQ(tc.id, "pool/worker-3");
  EXPECT_FALSE(round_trip(events_request{false}).follow);
  EXPECT_TRUE(round_trip(events_request{true}).follow);
  EXPECT_EQ(round_trip(whereis_request{"cache"}).name, "cache");
  auto m = round_trip(monitor_request{1234, ""});
  EXPECT_EQ(m.pid, 1234);
  m = round_trip(monitor_request{std::nullopt, "cache"});
  EXPECT_FALSE(m.pid.has_value());
  EXPECT_EQ(m.name, "cache");
  EXPECT_EQ(round_trip(exit_reason_request{4321}).pid, 4321);
}

TEST(ControlProtocol, RequestDefaultsMatchTheDaemon) {
  EXPECT_TRUE(events_request::from_json({{"cmd", "events"}}).follow);
  EXPECT_EQ(exit_reason_request::from_json({{"cmd", "exit-reason"}}).pid, -1);
  EXPECT_TRUE(start_child_request::from_json({{"cmd", "start-child"}}).args.empty());
  EXPECT_EQ(child_request::from_json({{"cmd", "stop"}}).what, child_request::verb::stop);
}

TEST(ControlProtocol, WrongFieldTypesThrow) {
  EXPECT_THROW((void)kill_request::from_json({{"cmd", "kill"}, {"signal", true}}), json::exception);
  EXPECT_THROW((void)monitor_request::from_json({{"cmd", "monitor"}, {"pid", "x"}}),
               json::exception);
  EXPECT_THROW((void)command_of({{"cmd", 3}}), json::exception);
}

TEST(ControlProtocol, RepliesRoundTrip) {
  auto e = round_trip(error_reply{"no such child: x"});
  EXPECT_EQ(e.error, "no such child: x");
  EXPECT_FALSE(is_ok(error_reply{"x"}.to_json()));
  EXPECT_TRUE(is_ok(ok_reply{}.to_json()));
  (void)round_trip(ok_reply{});
  EXPECT_EQ(round_trip(pid_reply{77}).pid, 77);
  EXPECT_EQ(round_trip(start_child_reply{"pool/worker-1"}).path, "pool/worker-1");
  auto r = round_trip(reload_reply{{"a"}, {"b", "c"}, {}});
  EXPECT_EQ(r.added, (std::vector<std::string>{"a"}));
  EXPECT_EQ(r.removed, (std::vector<std::string>{"b", "c"}));
  EXPECT_TRUE(r.changed.empty());
  EXPECT_EQ(round_trip(reopen_logs_reply{3}).files, 3U);
  auto x = round_trip(exit_reason_reply{99, core::exit_reason{core::exit_kind::signal, 15}});
  EXPECT_EQ(x.pid, 99);
  ASSERT_TRUE(x.reason.has_value());
  EXPECT_EQ(*x.reason, (core::exit_reason{core::exit_kind::signal, 15}));
  x = round_trip(exit_reason_reply{99, std::nullopt});
  EXPECT_FALSE(x.reason.has_value());
  json not_found = exit_reason_reply{99, std::nullopt}.to_json();
  EXPECT_FALSE(not_found["found"].get<bool>());
}

node_status supervisor_node(const std::string& id, const std::string& path,
                            const std::string& strategy, const node_status& child) {
  node_status s;
  s.id = id;
  s.path = path;
  s.state = "running";
  s.is_supervisor = true;
  s.restart = "permanent";
  s.strategy = strategy;
  s.children.push_back(child);
  return s;
}

node_status sample_tree() {
  node_status w;
  w.id = "api";
  w.path = "web/api";
  w.pid = 4242;
  w.state = "running";
  w.restarts = 2;
  w.restart = "permanent";
  w.uptime_ms = 1500;
  w.last_exit = "killed";
  w.name = "api";
  w.stdout_path = "/var/log/api.log";
  w.notify_status = "serving 12 requests";
  w.notify_errno = 5;
  return supervisor_node("root", "/", "one_for_all",
                         supervisor_node("web", "web", "one_for_one", w));
}

void expect_same(const node_status& a, const node_status& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.restarts, b.restarts);
  EXPECT_EQ(a.is_supervisor, b.is_supervisor);
  EXPECT_EQ(a.restart, b.restart);
  EXPECT_EQ(a.uptime_ms, b.uptime_ms);
  EXPECT_EQ(a.last_exit, b.last_exit);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.stdout_path, b.stdout_path);
  EXPECT_EQ(a.stderr_path, b.stderr_path);
  EXPECT_EQ(a.strategy, b.strategy);
  EXPECT_EQ(a.notify_status, b.notify_status);
  EXPECT_EQ(a.notify_errno, b.notify_errno);
  ASSERT_EQ(a.children.size(), b.children.size());
  for (std::size_t i = 0; i < a.children.size(); ++i) {
    expect_same(a.children[i], b.children[i]);
  }
}

TEST(ControlProtocol, StatusReplyRoundTrips) {
  status_reply s{sample_tree(), "node-a", 100, "/run/otpd"};
  json j = s.to_json();
  EXPECT_TRUE(is_ok(j));
  EXPECT_TRUE(j["children"][0]["pid"].is_null());  // a supervisor has no pid
  EXPECT_EQ(j["children"][0]["type"], "supervisor");
  auto back = round_trip(s);
  EXPECT_EQ(back.node, "node-a");
  EXPECT_EQ(back.otpd_pid, 100);
  EXPECT_EQ(back.runtime_dir, "/run/otpd");
  expect_same(back.root, s.root);
}

TEST(ControlProtocol, LivenessFailuresRoundTripAndStayAbsentWithoutAProbe) {
  node_status w;
  w.id = "api";
  w.path = "api";
  w.pid = 77;
  w.state = "running";
  w.restart = "permanent";
  w.liveness_failures = 2;
  w.liveness_threshold = 3;
  json j = w.to_json();
  EXPECT_EQ(j["liveness_failures"], 2);
  EXPECT_EQ(j["liveness_threshold"], 3);
  auto back = node_status::from_json(j);
  EXPECT_EQ(back.liveness_failures, 2);
  EXPECT_EQ(back.liveness_threshold, 3);
  json plain = sample_tree().to_json();
  EXPECT_FALSE(plain["children"][0]["children"][0].contains("liveness_failures"));
  EXPECT_FALSE(node_status::from_json(plain).children[0].children[0].liveness_failures);
}

TEST(ControlProtocol, EventsRoundTrip) {
  lifecycle_event started{"started", "web/api", 123, 4242, std::nullopt, std::nullopt};
  lifecycle_event exited{"exited",
                         "web/api",
                         456,
                         4242,
                         core::exit_reason{core::exit_kind::killed, 9},
                         std::string("by operator")};
  started.time = "2026-12-02T10:01:02.345Z";
  auto r = round_trip(events_reply{{started, exited}});
  ASSERT_EQ(r.recent.size(), 2U);
  EXPECT_EQ(r.recent[0].time, "2026-12-02T10:01:02.345Z");
  EXPECT_EQ(r.recent[1].time, "");
  EXPECT_EQ(r.recent[0].event, "started");
  EXPECT_EQ(r.recent[0].ts_ms, 123);
  EXPECT_EQ(r.recent[0].pid, 4242);
  EXPECT_FALSE(r.recent[0].reason.has_value());
  EXPECT_FALSE(r.recent[0].detail.has_value());
  EXPECT_EQ(r.recent[1].reason, exited.reason);
  EXPECT_EQ(r.recent[1].detail, "by operator");
  auto d = round_trip(down_event{4242, core::exit_reason{core::exit_kind::noproc, 0}});
  EXPECT_EQ(d.pid, 4242);
  EXPECT_EQ(d.reason.kind, core::exit_kind::noproc);
  json dj = down_event{1, core::exit_reason::code(3)}.to_json();
  EXPECT_EQ(dj["event"], "down");
  EXPECT_EQ(dj["reason"], "exit 3");
  EXPECT_EQ(dj["reason_kind"], 1);
  EXPECT_EQ(dj["reason_value"], 3);
  // A stopped child's reasons keep their stable numbers on the wire.
  json sj = down_event{1, core::exit_reason{core::exit_kind::shutdown, 0}}.to_json();
  EXPECT_EQ(sj["reason"], "shutdown");
  EXPECT_EQ(sj["reason_kind"], 5);
  // A reason kind from a newer otpd: read as unknown, which is abnormal.
  dj["reason_kind"] = 99;
  auto future = down_event::from_json(dj);
  EXPECT_EQ(future.reason.kind, core::exit_kind::unknown);
  EXPECT_FALSE(future.reason.is_normal());
}

}  // namespace
}  // namespace otpd::protocol

// /metrics from the model: what series exist; the text is checked by a
// real Prometheus parser in tests/integration/observer_test.cpp.
#include <gtest/gtest.h>

#include <otpd/observer/metrics.hpp>

namespace otpd::observer {
namespace {

TEST(ObserverMetrics, SeriesPerChildAndForOtpd) {
  model m([] { return std::int64_t{5000}; }, [] { return std::int64_t{0}; });
  m.apply_status(json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"a\"b","path":"a\"b","pid":77,"state":"running","restarts":3,"type":"worker",
       "restart":"permanent","uptime_ms":2000}]})"));
  m.apply_event({{"event", "exited"},
                 {"path", "a\"b"},
                 {"pid", 1},
                 {"reason", "killed"},
                 {"reason_kind", 4},
                 {"reason_value", 9}});
  m.set_otpd_figures(1 << 20, 12);
  std::string text = render_metrics(m.snap());
  EXPECT_NE(text.find("otpd_child_up{node=\"demo\",path=\"a\\\"b\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("otpd_child_restarts_total{node=\"demo\",path=\"a\\\"b\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("otpd_child_exits_total{node=\"demo\",path=\"a\\\"b\",reason=\"killed\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("otpd_child_state{node=\"demo\",path=\"a\\\"b\",state=\"running\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("otpd_child_uptime_seconds{node=\"demo\",path=\"a\\\"b\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("otpd_open_fds{node=\"demo\"} 12"), std::string::npos) << text;
  EXPECT_NE(text.find("otpd_events_total{node=\"demo\",event=\"exited\"} 1"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("intensity"), std::string::npos) << "not reported by status: no series";
}

TEST(ObserverMetrics, InstancesCarryInstanceOf) {
  model m([] { return std::int64_t{5000}; }, [] { return std::int64_t{0}; });
  m.apply_status(json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"w-0","path":"w-0","pid":77,"state":"running","restarts":3,"type":"worker",
       "restart":"permanent","instance_of":"w","instance":0},
      {"id":"solo","path":"solo","pid":78,"state":"running","restarts":0,"type":"worker",
       "restart":"permanent"}]})"));
  std::string text = render_metrics(m.snap());
  EXPECT_NE(text.find("otpd_child_up{node=\"demo\",instance_of=\"w\",path=\"w-0\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("otpd_child_restarts_total{node=\"demo\",instance_of=\"w\",path=\"w-0\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("otpd_child_up{node=\"demo\",path=\"solo\"} 1"), std::string::npos) << text;
}

}  // namespace
}  // namespace otpd::observer

// What otpd-web's page reads: the model as JSON, child text kept as data.
#include <gtest/gtest.h>

#include <otpd/observer/web_json.hpp>

namespace otpd::observer {
namespace {

TEST(WebJson, RowsCarryTheFiguresAndChildTextStaysAString) {
  model m([] { return std::int64_t{1000}; }, [] { return std::int64_t{1700000000000}; });
  m.apply_status(json::parse(R"({"ok":true,"node":"n","otpd_pid":7,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"<b>x</b>","path":"<b>x</b>","pid":42,"state":"running","restarts":1,
       "type":"worker","restart":"permanent","uptime_ms":10}]})"));
  m.apply_event({{"event", "exited"},
                 {"path", "<b>x</b>"},
                 {"pid", 42},
                 {"reason", "exit 3"},
                 {"reason_kind", 1},
                 {"reason_value", 3}});
  json j = snapshot_json(m.snap());
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0]["path"], "/");
  EXPECT_EQ(j["rows"][0]["strategy"], "one_for_one");
  const json& r = j["rows"][1];
  EXPECT_EQ(r["id"], "<b>x</b>");
  EXPECT_TRUE(r["pid"].is_null()) << "the exit applied";
  EXPECT_EQ(r["last_exit"], "exit 3");
  EXPECT_EQ(r["exits_by_kind"]["exit_code"], 1);
  json detail = child_json(m.snap().rows[1], true);
  ASSERT_EQ(detail["recent_exits"].size(), 1u);
  EXPECT_EQ(detail["recent_exits"][0]["time_ms"], 1700000000000);
  EXPECT_EQ(detail["recent_exits"][0]["pid"], 42);
}

TEST(WebJson, GroupsOfInstancesWithTheirSumsAndMembers) {
  model m([] { return std::int64_t{1000}; }, [] { return std::int64_t{1700000000000}; });
  m.apply_status(json::parse(R"({"ok":true,"node":"n","otpd_pid":7,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"q-0","path":"q-0","pid":40,"state":"running","restarts":1,"type":"worker",
       "restart":"permanent","instance_of":"q","instance":0,"liveness_failures":1,
       "liveness_threshold":3},
      {"id":"q-1","path":"q-1","pid":null,"state":"stopped","restarts":2,"type":"worker",
       "restart":"permanent","instance_of":"q","instance":1},
      {"id":"solo","path":"solo","pid":41,"state":"running","restarts":0,"type":"worker",
       "restart":"permanent"}]})"));
  json j = snapshot_json(m.snap());
  ASSERT_EQ(j["rows"].size(), 4u) << "every child keeps its row";
  ASSERT_EQ(j["groups"].size(), 1u);
  const json& g = j["groups"][0];
  EXPECT_EQ(g["key"], "q-*");
  EXPECT_EQ(g["id"], "q");
  EXPECT_EQ(g["parent"], "/");
  EXPECT_EQ(g["members"], json::array({"q-0", "q-1"}));
  EXPECT_EQ(g["total"], 2);
  EXPECT_EQ(g["running"], 1);
  EXPECT_EQ(g["restarts"], 3);
  EXPECT_EQ(g["state"], "stopped");
  EXPECT_TRUE(g["memory_bytes"].is_null());
  EXPECT_EQ(j["rows"][1]["instance_of"], "q");
  EXPECT_EQ(j["rows"][1]["instance"], 0);
  EXPECT_EQ(j["rows"][1]["liveness_failures"], 1);
  EXPECT_EQ(j["rows"][1]["liveness_threshold"], 3);
  EXPECT_FALSE(j["rows"][3].contains("instance_of"));
  EXPECT_FALSE(j["rows"][3].contains("liveness_failures"));
}

TEST(WebJson, InvalidUtf8IsReplacedNotThrown) {
  json j = {{"reason", std::string("bad \xff\xfe bytes")}};
  std::string s;
  EXPECT_NO_THROW(s = dump_safe(j));
  EXPECT_NE(s.find("bad \xef\xbf\xbd"), std::string::npos) << s;
  EXPECT_EQ(s.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace otpd::observer

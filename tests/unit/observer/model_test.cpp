// The observer's model, driven by hand: status replies and event lines as
// otpd writes them (docs/PROTOCOL.md), /proc samples from a table, and a
// clock the test moves.
#include <map>

#include <gtest/gtest.h>

#include <otpd/observer/model.hpp>

namespace otpd::observer {
namespace {

struct fixture {
  std::int64_t now = 1000;
  std::int64_t wall = 1700000000000;
  model m{[this] { return now; }, [this] { return wall; }};
  std::map<pid_t, proc_sample> procs;
  proc_reader reader = [this](pid_t p) -> std::optional<proc_sample> {
    auto it = procs.find(p);
    if (it == procs.end()) {
      return std::nullopt;
    }
    return it->second;
  };
  void sample() { m.sample(reader, 100, 4096); }
  const child_view& row(const std::string& path) {
    last_ = m.snap();
    for (const auto& r : last_.rows) {
      if (r.path == path) {
        return r;
      }
    }
    static child_view none;
    ADD_FAILURE() << "no row " << path;
    return none;
  }
  snapshot last_;
};

json demo_status() {
  return json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"web","path":"web","pid":null,"state":"running","restarts":0,"type":"supervisor",
       "restart":"permanent","strategy":"one_for_all","children":[
        {"id":"api","path":"web/api","pid":4123,"state":"running","restarts":2,
         "type":"worker","restart":"permanent","uptime_ms":15000,"last_exit":"killed",
         "name":"api"}]},
      {"id":"db","path":"db","pid":4200,"state":"running","restarts":0,"type":"worker",
       "restart":"permanent","uptime_ms":500}]})");
}

TEST(ObserverModel, BuildsTheTreeFromStatusInOrder) {
  fixture f;
  f.m.apply_status(demo_status());
  auto s = f.m.snap();
  ASSERT_EQ(s.rows.size(), 4u);
  EXPECT_EQ(s.rows[0].path, "/");
  EXPECT_EQ(s.rows[0].depth, -1);
  EXPECT_EQ(s.rows[1].path, "web");
  EXPECT_TRUE(s.rows[1].supervisor);
  EXPECT_EQ(s.rows[1].strategy, "one_for_all");
  EXPECT_EQ(s.rows[2].path, "web/api");
  EXPECT_EQ(s.rows[2].depth, 1);
  EXPECT_EQ(s.rows[2].pid, 4123);
  EXPECT_EQ(s.rows[2].restarts, 2);
  EXPECT_EQ(s.rows[2].name, "api");
  EXPECT_EQ(s.rows[2].last_exit, "killed");
  EXPECT_EQ(s.rows[3].path, "db");
  EXPECT_EQ(s.facts.node, "demo");
  EXPECT_EQ(s.facts.otpd_pid, 4100);
}

TEST(ObserverModel, BackoffNextStartLastExitsAndIntensityFromStatus) {
  fixture f;
  f.m.apply_status(json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one",
    "intensity":{"used":2,"max_restarts":3,"max_seconds":5},"children":[
      {"id":"w","path":"w","pid":null,"state":"backoff","restarts":2,"type":"worker",
       "restart":"permanent","last_exit":"exit 3","next_start_wall_ms":1700000004000,
       "last_exits":[
         {"wall_ms":1700000001000,"reason":"exit 3","reason_kind":1,"reason_value":3},
         {"wall_ms":1700000002000,"reason":"liveness_failed","reason_kind":10,
          "reason_value":15}]}]})"));
  const child_view& w = f.row("w");
  EXPECT_EQ(w.state, "backoff");
  EXPECT_EQ(w.next_start_wall_ms, 1700000004000);
  ASSERT_EQ(w.recent_exits.size(), 2u);
  EXPECT_EQ(w.recent_exits[0].wall_ms, 1700000001000);
  EXPECT_EQ(w.recent_exits[1].reason, "liveness_failed");
  EXPECT_EQ(w.recent_exits[1].kind, "liveness_failed");
  const child_view& root = f.row("/");
  ASSERT_TRUE(root.intens.has_value());
  EXPECT_EQ(root.intens->used, 2);
  EXPECT_EQ(root.intens->max_restarts, 3);
}

TEST(ObserverModel, UptimeRunsOnTheInjectedClock) {
  fixture f;
  f.m.apply_status(demo_status());
  EXPECT_EQ(f.row("web/api").uptime_ms, 15000);
  f.now += 2500;
  EXPECT_EQ(f.row("web/api").uptime_ms, 17500);
  EXPECT_FALSE(f.row("web").uptime_ms);
}

TEST(ObserverModel, AKillShowsFromTheEventsAlone) {
  fixture f;
  f.m.apply_status(demo_status());
  json exited = {{"event", "exited"},  {"path", "web/api"}, {"pid", 4123},      {"ts_ms", 10},
                 {"reason", "killed"}, {"reason_kind", 4},  {"reason_value", 9}};
  EXPECT_FALSE(f.m.apply_event(exited));
  EXPECT_FALSE(f.row("web/api").pid);
  EXPECT_EQ(f.row("web/api").state, "stopped");
  EXPECT_EQ(f.row("web/api").exits_by_kind.at("killed"), 1u);
  ASSERT_EQ(f.row("web/api").recent_exits.size(), 1u);
  EXPECT_EQ(f.row("web/api").recent_exits[0].reason, "killed");
  EXPECT_EQ(f.row("web/api").recent_exits[0].wall_ms, f.wall);

  json restarting = {{"event", "restarting"}, {"path", "web/api"}, {"ts_ms", 10},
                     {"reason", "killed"},    {"reason_kind", 4},  {"reason_value", 9}};
  EXPECT_TRUE(f.m.apply_event(restarting)) << "restart counts come from status";
  EXPECT_EQ(f.row("web").restarts_seen, 1u);

  f.now += 100;
  EXPECT_FALSE(f.m.apply_event({{"event", "started"}, {"path", "web/api"}, {"pid", 5000}}));
  EXPECT_EQ(f.row("web/api").pid, 5000);
  EXPECT_EQ(f.row("web/api").state, "starting");
  EXPECT_FALSE(f.row("web/api").uptime_ms);
  f.now += 50;
  EXPECT_FALSE(f.m.apply_event({{"event", "ready"}, {"path", "web/api"}, {"pid", 5000}}));
  EXPECT_EQ(f.row("web/api").state, "running");
  f.now += 1000;
  EXPECT_EQ(f.row("web/api").uptime_ms, 1000);
  EXPECT_EQ(f.m.facts().events_by_type.at("exited"), 1u);
  EXPECT_EQ(f.m.facts().events_by_type.at("started"), 1u);
  EXPECT_EQ(f.m.last_event_ts(), 10);
}

TEST(ObserverModel, ALateEventDoesNotUndoANewerStatus) {
  fixture f;
  json st = demo_status();
  st["children"][1]["pid"] = 4300;  // db already restarted when status was taken
  f.m.apply_status(st);
  f.m.apply_event({{"event", "exited"},
                   {"path", "db"},
                   {"pid", 4200},
                   {"reason", "exit 3"},
                   {"reason_kind", 1},
                   {"reason_value", 3}});
  EXPECT_EQ(f.row("db").pid, 4300);
  EXPECT_EQ(f.row("db").state, "running");
  EXPECT_EQ(f.row("db").exits_by_kind.at("exit_code"), 1u) << "the exit still counts";
}

TEST(ObserverModel, UnknownPathsAndStructuralEventsAskForStatus) {
  fixture f;
  f.m.apply_status(demo_status());
  EXPECT_TRUE(f.m.apply_event({{"event", "started"}, {"path", "web/new"}, {"pid", 9}}));
  EXPECT_TRUE(f.m.apply_event({{"event", "reload_applied"}, {"path", "/"}}));
  EXPECT_TRUE(f.m.apply_event({{"event", "intensity_exceeded"}, {"path", "web"}}));
  // Wrong types: counted as malformed, nothing else.
  EXPECT_FALSE(f.m.apply_event({{"event", 3}, {"path", "db"}}));
  EXPECT_FALSE(f.m.apply_event(json::array()));
  EXPECT_EQ(f.m.facts().events_by_type.at("malformed"), 1u);
}

TEST(ObserverModel, StatusKeepsWhatOnlyTheObserverKnows) {
  fixture f;
  f.m.apply_status(demo_status());
  f.m.apply_event({{"event", "exited"},
                   {"path", "db"},
                   {"pid", 4200},
                   {"reason", "killed"},
                   {"reason_kind", 4},
                   {"reason_value", 9}});
  json st = demo_status();
  st["children"][1]["pid"] = 4301;
  f.m.apply_status(st);
  EXPECT_EQ(f.row("db").exits_by_kind.at("killed"), 1u);
  EXPECT_EQ(f.row("db").recent_exits.size(), 1u);
  EXPECT_EQ(f.row("db").pid, 4301);
  // A removed child goes with the next status.
  st["children"].erase(1);
  f.m.apply_status(st);
  EXPECT_EQ(f.m.snap().rows.size(), 3u);
}

TEST(ObserverModel, CpuPercentIsTheDeltaOverTheInterval) {
  fixture f;
  f.m.apply_status(demo_status());
  f.procs[4123] = {100, 777, 256};  // 1.00 s of CPU, 256 pages
  f.sample();
  EXPECT_FALSE(f.row("web/api").cpu_percent) << "one sample has no interval";
  EXPECT_DOUBLE_EQ(*f.row("web/api").cpu_seconds, 1.0);
  EXPECT_EQ(f.row("web/api").memory_bytes, 256u * 4096u);
  f.now += 2000;
  f.procs[4123].cpu_ticks = 150;  // 0.5 s more in 2 s: 25 %
  f.sample();
  EXPECT_NEAR(*f.row("web/api").cpu_percent, 25.0, 1e-9);
  EXPECT_FALSE(f.row("db").cpu_percent) << "db has no /proc entry";
  EXPECT_FALSE(f.row("web").memory_bytes) << "supervisors have no process";
}

TEST(ObserverModel, AReusedPidStartsANewBaseline) {
  fixture f;
  f.m.apply_status(demo_status());
  f.procs[4123] = {500, 777, 10};
  f.sample();
  f.now += 1000;
  f.procs[4123] = {3, 900, 10};  // same pid, another process (start time differs)
  f.sample();
  EXPECT_FALSE(f.row("web/api").cpu_percent);
  f.now += 1000;
  f.procs[4123].cpu_ticks = 13;  // 0.1 s in 1 s
  f.sample();
  EXPECT_NEAR(*f.row("web/api").cpu_percent, 10.0, 1e-9);
}

TEST(ObserverModel, FiguresFromStatusWinOverProc) {
  fixture f;
  json st = demo_status();
  st["children"][1]["resources"] = {{"cpu_usec", 2000000}, {"memory_current", 1048576}};
  f.m.apply_status(st);
  f.procs[4200] = {1, 1, 1};
  f.sample();
  EXPECT_TRUE(f.row("db").figures_from_status);
  EXPECT_EQ(f.row("db").memory_bytes, 1048576u);
  EXPECT_DOUBLE_EQ(*f.row("db").cpu_seconds, 2.0);
  f.now += 1000;
  st["children"][1]["resources"]["cpu_usec"] = 2500000;  // 0.5 s in 1 s
  f.m.apply_status(st);
  EXPECT_NEAR(*f.row("db").cpu_percent, 50.0, 1e-9);
  // Flat fields work too.
  st["children"][1].erase("resources");
  st["children"][1]["memory_bytes"] = 4096;
  f.m.apply_status(st);
  EXPECT_EQ(f.row("db").memory_bytes, 4096u);
  // cpu_usec alone (a cgroup without the memory controller): /proc gives both.
  st["children"][1].erase("memory_bytes");
  st["children"][1]["cpu_usec"] = 3000000;
  f.m.apply_status(st);
  EXPECT_FALSE(f.row("db").figures_from_status);
}

TEST(ObserverModel, IntensityWhenStatusReportsIt) {
  fixture f;
  json st = demo_status();
  EXPECT_FALSE(f.m.snap().rows.size());
  f.m.apply_status(st);
  EXPECT_FALSE(f.row("web").intens) << "today's otpd does not report it";
  st["children"][0]["intensity"] = {{"used", 2}, {"max_restarts", 3}, {"max_seconds", 5}};
  f.m.apply_status(st);
  ASSERT_TRUE(f.row("web").intens);
  EXPECT_EQ(f.row("web").intens->used, 2);
  EXPECT_EQ(f.row("web").intens->max_restarts, 3);
}

TEST(ObserverModel, RecentEventsAndExitsAreBounded) {
  fixture f;
  f.m.apply_status(demo_status());
  for (int i = 0; i < 600; ++i) {
    f.m.apply_event({{"event", "exited"},
                     {"path", "db"},
                     {"pid", 1},
                     {"reason", "exit 1"},
                     {"reason_kind", 1},
                     {"reason_value", 1}});
  }
  auto s = f.m.snap();
  EXPECT_EQ(s.recent_events.size(), model::max_recent_events);
  EXPECT_EQ(f.row("db").recent_exits.size(), model::max_recent_exits);
  EXPECT_EQ(f.row("db").exits_by_kind.at("exit_code"), 600u);
}

// A worker with `instances: 3` under the root, one with `instances: 2`
// under a supervisor, and a plain worker between them.
json instances_status() {
  return json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"pool-1","path":"pool-1","pid":5001,"state":"running","restarts":2,"type":"worker",
       "restart":"permanent","uptime_ms":9000,"instance_of":"pool","instance":1,
       "memory_current":2000,"cpu_usec":1000000,
       "liveness_failures":2,"liveness_threshold":3},
      {"id":"pool-0","path":"pool-0","pid":5000,"state":"running","restarts":1,"type":"worker",
       "restart":"permanent","uptime_ms":4000,"instance_of":"pool","instance":0,
       "memory_current":1000,"cpu_usec":2000000},
      {"id":"alpha","path":"alpha","pid":5100,"state":"running","restarts":0,"type":"worker",
       "restart":"permanent","uptime_ms":100},
      {"id":"pool-2","path":"pool-2","pid":null,"state":"backoff","restarts":4,"type":"worker",
       "restart":"permanent","instance_of":"pool","instance":2},
      {"id":"svc","path":"svc","pid":null,"state":"running","restarts":0,"type":"supervisor",
       "restart":"permanent","strategy":"one_for_all","children":[
        {"id":"web-0","path":"svc/web-0","pid":5200,"state":"running","restarts":0,
         "type":"worker","restart":"permanent","instance_of":"web","instance":0},
        {"id":"web-1","path":"svc/web-1","pid":5201,"state":"failed","restarts":0,
         "type":"worker","restart":"permanent","instance_of":"web","instance":1}]}]})");
}

TEST(ObserverModelGroups, InstancesOfOneWorkerAreOneGroupWithItsSums) {
  fixture f;
  f.m.apply_status(instances_status());
  f.now += 1000;
  f.m.apply_status(instances_status());  // a second reading: CPU % from the cgroup's usec
  auto s = f.m.snap();
  ASSERT_EQ(s.groups.size(), 2u);
  const instance_group& pool = s.groups[0];
  EXPECT_EQ(pool.key, "pool-*");
  EXPECT_EQ(pool.id, "pool");
  EXPECT_EQ(pool.parent, "/");
  EXPECT_EQ(pool.depth, 0);
  ASSERT_EQ(pool.members.size(), 3u);
  // By instance number, whatever the order status listed them in.
  EXPECT_EQ(s.rows[pool.members[0]].path, "pool-0");
  EXPECT_EQ(s.rows[pool.members[1]].path, "pool-1");
  EXPECT_EQ(s.rows[pool.members[2]].path, "pool-2");
  EXPECT_EQ(pool.total, 3);
  EXPECT_EQ(pool.running, 2);
  EXPECT_EQ(pool.restarts, 7);
  EXPECT_EQ(pool.memory_bytes, 3000u);
  ASSERT_TRUE(pool.cpu_percent.has_value());
  EXPECT_DOUBLE_EQ(*pool.cpu_percent, 0.0) << "no CPU used between the two readings";
  EXPECT_EQ(pool.uptime_ms, 9000) << "the longest";
  EXPECT_EQ(pool.state, "backoff") << "the worst of running, running, backoff";

  const instance_group& web = s.groups[1];
  EXPECT_EQ(web.key, "svc/web-*");
  EXPECT_EQ(web.parent, "svc");
  EXPECT_EQ(web.depth, 1);
  EXPECT_EQ(web.total, 2);
  EXPECT_EQ(web.running, 1);
  EXPECT_EQ(web.state, "failed");
  EXPECT_FALSE(web.memory_bytes) << "no instance has a figure";

  const child_view& p1 = f.row("pool-1");
  EXPECT_EQ(p1.instance_of, "pool");
  EXPECT_EQ(p1.instance, 1);
  EXPECT_EQ(p1.liveness_failures, 2);
  EXPECT_EQ(p1.liveness_threshold, 3);
  EXPECT_TRUE(f.row("alpha").instance_of.empty());
  EXPECT_FALSE(f.row("alpha").liveness_failures);
}

TEST(ObserverModelGroups, AnExitAndANewProcessShowInTheGroupFromEvents) {
  fixture f;
  f.m.apply_status(instances_status());
  EXPECT_FALSE(f.m.apply_event({{"event", "exited"},
                                {"path", "pool-0"},
                                {"pid", 5000},
                                {"reason", "killed"},
                                {"reason_kind", 4},
                                {"reason_value", 9}}));
  auto s = f.m.snap();
  EXPECT_EQ(s.groups[0].running, 1);
  EXPECT_FALSE(s.rows[s.groups[0].members[0]].pid);
  EXPECT_FALSE(f.m.apply_event({{"event", "started"}, {"path", "pool-0"}, {"pid", 5300}}));
  EXPECT_FALSE(f.m.apply_event({{"event", "ready"}, {"path", "pool-0"}, {"pid", 5300}}));
  s = f.m.snap();
  EXPECT_EQ(s.groups[0].running, 2);
  EXPECT_EQ(s.rows[s.groups[0].members[0]].pid, 5300);
}

TEST(ObserverModelGroups, LivenessCountFollowsProbeEventsOfTheCurrentProcess) {
  fixture f;
  f.m.apply_status(instances_status());
  EXPECT_FALSE(f.m.apply_event({{"event", "probe_failed"},
                                {"path", "pool-0"},
                                {"pid", 5000},
                                {"detail", "liveness 1/4: command x: command ended: exit 1"}}));
  EXPECT_EQ(f.row("pool-0").liveness_failures, 1);
  EXPECT_EQ(f.row("pool-0").liveness_threshold, 4);
  // About another process: ignored.
  EXPECT_FALSE(f.m.apply_event({{"event", "probe_failed"},
                                {"path", "pool-0"},
                                {"pid", 1234},
                                {"detail", "liveness 3/4: x"}}));
  EXPECT_EQ(f.row("pool-0").liveness_failures, 1);
  EXPECT_FALSE(f.m.apply_event({{"event", "exited"},
                                {"path", "pool-0"},
                                {"pid", 5000},
                                {"reason", "liveness_failed"},
                                {"reason_kind", 10},
                                {"reason_value", 15}}));
  EXPECT_FALSE(f.row("pool-0").liveness_failures) << "the count went with the process";
}

TEST(ObserverModelGroups, WorstStateRanks) {
  EXPECT_LT(state_rank("running"), state_rank("starting"));
  EXPECT_LT(state_rank("starting"), state_rank("stopping"));
  EXPECT_LT(state_rank("stopping"), state_rank("backoff"));
  EXPECT_LT(state_rank("backoff"), state_rank("stopped"));
  EXPECT_LT(state_rank("stopped"), state_rank("failed"));
  EXPECT_TRUE(group_instances({}).empty());
}

TEST(ObserverFormat, UptimeAndBytes) {
  EXPECT_EQ(format_uptime(std::nullopt), "-");
  EXPECT_EQ(format_uptime(4200), "4.2s");
  EXPECT_EQ(format_uptime(187000), "3m07s");
  EXPECT_EQ(format_uptime(5 * 3600000 + 120000), "5h02m");
  EXPECT_EQ(format_uptime(3 * 86400000LL + 4 * 3600000), "3d04h");
  EXPECT_EQ(format_bytes(std::nullopt), "-");
  EXPECT_EQ(format_bytes(812 * 1024), "812K");
  EXPECT_EQ(format_bytes(14 * 1024 * 1024 + 200 * 1024), "14.2M");
  EXPECT_EQ(exit_kind_name(4), "killed");
  EXPECT_EQ(exit_kind_name(99), "other");
}

}  // namespace
}  // namespace otpd::observer

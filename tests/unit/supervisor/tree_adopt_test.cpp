// tree::snapshot and tree::adopt (otpctl reexec): a tree handed to the next
// otpd process goes on exactly where the old one was, without a spawn.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/supervisor/tree.hpp>

namespace otpd::supervisor {
namespace {

std::shared_ptr<const config> cfg_of(const std::string& yaml) {
  auto r = parse_config(yaml, "t.yaml");
  EXPECT_TRUE(r.has_value()) << r.message();
  return *r;
}

// Plays the daemon (as tree_test's harness): spawns get fake pids and are
// ready at once, stops end with a shutdown exit; schedules are recorded with
// their delay. The clock is shared by two trees, the old and the new.
struct owner {
  std::int64_t* now;
  tree t;
  pid_t next_pid;
  bool auto_ready = true;
  std::vector<std::string> log;
  std::vector<std::pair<std::uint64_t, int>> timers;
  std::vector<event> events;

  owner(const std::string& yaml, std::int64_t* clock, pid_t first_pid = 100)
      : now(clock), t(cfg_of(yaml), [clock] { return *clock; }), next_pid(first_pid) {}

  void run() {
    while (t.has_actions()) {
      for (auto& a : t.take_actions()) {
        node* n = t.find(a.uid);
        switch (a.k) {
          case action::kind::spawn:
            log.push_back("spawn " + n->path);
            t.on_spawned(a.uid, next_pid++);
            if (auto_ready) {
              t.on_ready(a.uid);
            }
            break;
          case action::kind::stop:
            log.push_back("stop " + n->path);
            t.on_exit(a.uid, {core::exit_kind::shutdown, 0});
            break;
          case action::kind::schedule:
            timers.emplace_back(a.uid, a.delay_ms);
            break;
          case action::kind::notify:
            events.push_back(a.ev);
            break;
          case action::kind::exit_node:
            log.push_back("exit");
            break;
        }
      }
    }
  }
  node& get(const std::string& who) {
    auto n = t.resolve(who);
    EXPECT_TRUE(n.has_value()) << n.message();
    return **n;
  }
  void kill(const std::string& who) {
    t.on_exit(get(who).uid, {core::exit_kind::killed, 9});
    run();
  }
  bool has_event(const std::string& type) const {
    for (const auto& e : events) {
      if (e.type == type) {
        return true;
      }
    }
    return false;
  }
};

const char* nested =
    "supervisor:\n  strategy: one_for_one\n  max_restarts: 3\n  max_seconds: 5\n  children:\n"
    "    - {id: a, command: [/bin/true]}\n"
    "    - {id: b, command: [/bin/true]}\n"
    "    - id: s\n      strategy: one_for_all\n"
    "      max_restarts: 5\n      max_seconds: 10\n      children:\n"
    "        - {id: x, command: [/bin/true]}\n"
    "        - {id: y, command: [/bin/true]}\n"
    "    - {id: c, command: [/bin/true]}\n";

TEST(TreeAdopt, RunningChildrenKeepTheirPidsAndNothingIsSpawned) {
  std::int64_t now = 1000;
  owner old(nested, &now);
  old.t.start();
  old.run();
  old.kill("a");
  now += 100;
  old.kill("x");  // one_for_all: x and y restart
  ASSERT_TRUE(old.t.stop_child("c").has_value());
  old.run();
  ASSERT_EQ(old.t.busy(), "");
  auto snap = old.t.snapshot();

  now += 50;
  owner next(nested, &now, 500);
  auto r = next.t.adopt(snap);
  ASSERT_TRUE(r.has_value()) << r.message();
  EXPECT_TRUE(r->unknown.empty());
  EXPECT_TRUE(r->fresh.empty());
  next.run();
  EXPECT_TRUE(next.log.empty()) << next.log.front();
  for (const char* p : {"a", "b", "s/x", "s/y"}) {
    EXPECT_EQ(next.get(p).pid, old.get(p).pid) << p;
    EXPECT_EQ(next.get(p).state, child_state::running) << p;
    EXPECT_EQ(next.get(p).restarts, old.get(p).restarts) << p;
    EXPECT_EQ(next.get(p).started_at_ms, old.get(p).started_at_ms) << p;
  }
  EXPECT_EQ(next.get("a").restarts, 1);
  EXPECT_EQ(next.get("s/x").restarts, 1);
  EXPECT_EQ(next.get("a").last_exits.size(), 1u);
  EXPECT_TRUE(next.get("c").held);
  EXPECT_EQ(next.get("c").state, child_state::stopped);
  EXPECT_EQ(next.t.root().state, child_state::running);
  EXPECT_EQ(next.t.restarts_in_window(next.t.root()), 1);
  EXPECT_EQ(next.t.restarts_in_window(next.get("s")), 1);
  EXPECT_EQ(next.t.held_paths(), std::vector<std::string>{"c"});

  // Healed as before: a crash restarts only that child, with a new pid.
  next.kill("b");
  EXPECT_EQ(next.log, std::vector<std::string>{"spawn b"});
  EXPECT_EQ(next.get("b").pid, 500);
  EXPECT_EQ(next.get("b").restarts, 1);
  // A held child stays held until started.
  ASSERT_TRUE(next.t.start_child("c").has_value());
  next.run();
  EXPECT_EQ(next.get("c").state, child_state::running);
}

TEST(TreeAdopt, IntensityWindowCountsRestartsFromBeforeTheHandover) {
  std::int64_t now = 1000;
  owner old(nested, &now);
  old.t.start();
  old.run();
  old.kill("a");
  old.kill("a");
  old.kill("a");  // 3 of max 3 in 5 s
  auto snap = old.t.snapshot();
  now += 1000;
  owner next(nested, &now, 500);
  ASSERT_TRUE(next.t.adopt(snap).has_value());
  next.run();
  EXPECT_EQ(next.t.restarts_in_window(next.t.root()), 3);
  next.kill("a");  // the 4th within 5 s: the root gives up
  EXPECT_TRUE(next.has_event("intensity_exceeded"));
}

TEST(TreeAdopt, BackoffIsScheduledAgainForTheTimeLeft) {
  const char* yaml =
      "supervisor:\n  strategy: one_for_one\n  max_restarts: 100\n  children:\n"
      "    - id: a\n      command: [/bin/true]\n"
      "      backoff: {initial: 100, max: 1000, jitter: 0}\n"
      "    - {id: b, command: [/bin/true]}\n";
  std::int64_t now = 1000;
  owner old(yaml, &now);
  old.t.start();
  old.run();
  old.kill("a");
  ASSERT_EQ(old.get("a").state, child_state::backoff);
  ASSERT_EQ(old.t.busy(), "");  // a restart waiting for its delay is no obstacle
  auto snap = old.t.snapshot();
  now += 30;
  owner next(yaml, &now, 500);
  ASSERT_TRUE(next.t.adopt(snap).has_value());
  next.run();
  EXPECT_EQ(next.get("a").state, child_state::backoff);
  EXPECT_EQ(next.get("a").backoff_attempt, 1);
  ASSERT_EQ(next.timers.size(), 1u);
  EXPECT_EQ(next.timers[0].first, next.get("a").uid);
  EXPECT_EQ(next.timers[0].second, 70);
  now += 70;
  next.t.on_timer(next.timers[0].first);
  next.run();
  EXPECT_EQ(next.log, std::vector<std::string>{"spawn a"});
  EXPECT_EQ(next.get("a").restarts, 1);
}

TEST(TreeAdopt, DynamicChildrenAreMadeAgainWithTheirArguments) {
  const char* yaml =
      "supervisor:\n  strategy: simple_one_for_one\n  template:\n"
      "    id: job\n    command: [/bin/echo]\n";
  std::int64_t now = 1000;
  owner old(yaml, &now);
  old.t.start();
  old.run();
  ASSERT_TRUE(old.t.start_dynamic("/", {"x"}).has_value());
  ASSERT_TRUE(old.t.start_dynamic("/", {"y", "z"}).has_value());
  old.run();
  ASSERT_TRUE(old.t.terminate_dynamic("/", "job-1").has_value());
  old.run();
  auto snap = old.t.snapshot();
  owner next(yaml, &now, 500);
  ASSERT_TRUE(next.t.adopt(snap).has_value());
  next.run();
  EXPECT_TRUE(next.log.empty());
  ASSERT_EQ(next.t.root().children.size(), 1u);
  EXPECT_EQ(next.get("job-2").pid, old.get("job-2").pid);
  EXPECT_EQ(next.get("job-2").extra_args, (std::vector<std::string>{"y", "z"}));
  EXPECT_TRUE(next.get("job-2").dynamic);
  // The counter goes on: no id is given twice.
  auto p = next.t.start_dynamic("/", {});
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(*p, "job-3");
  // A dynamic child that crashes is restarted (permanent template) with its arguments.
  next.run();
  next.log.clear();
  next.kill("job-2");
  EXPECT_EQ(next.log, std::vector<std::string>{"spawn job-2"});
}

TEST(TreeAdopt, BusyWhileAChildStartsOrStops) {
  std::int64_t now = 1000;
  owner o(nested, &now);
  o.auto_ready = false;
  o.t.start();
  o.run();
  EXPECT_EQ(o.t.busy(), "busy: a is starting; try again");
  o.auto_ready = true;
  o.t.on_ready(o.get("a").uid);
  o.run();
  EXPECT_EQ(o.t.busy(), "");
  o.t.shutdown();
  EXPECT_EQ(o.t.busy(), "busy: the node is stopping");
}

TEST(TreeAdopt, ChildrenGoneFromTheConfigAreOrphansAndNewOnesStart) {
  std::int64_t now = 1000;
  owner old(nested, &now);
  old.t.start();
  old.run();
  pid_t b = old.get("b").pid;
  auto snap = old.t.snapshot();
  const char* changed =
      "supervisor:\n  strategy: one_for_one\n  max_restarts: 3\n  max_seconds: 5\n  children:\n"
      "    - {id: a, command: [/bin/true]}\n"
      "    - {id: d, command: [/bin/true]}\n";
  owner next(changed, &now, 500);
  auto r = next.t.adopt(snap);
  ASSERT_TRUE(r.has_value());
  next.run();
  EXPECT_NE(std::find(r->unknown.begin(), r->unknown.end(), "b"), r->unknown.end());
  EXPECT_NE(std::find(r->orphans.begin(), r->orphans.end(), b), r->orphans.end());
  EXPECT_EQ(r->fresh, std::vector<std::string>{"d"});
  EXPECT_EQ(next.log, std::vector<std::string>{"spawn d"});
  EXPECT_EQ(next.get("a").pid, old.get("a").pid);
}

TEST(TreeAdopt, OnlyIntoATreeThatNeverStarted) {
  std::int64_t now = 1000;
  owner old(nested, &now);
  old.t.start();
  old.run();
  auto snap = old.t.snapshot();
  EXPECT_FALSE(old.t.adopt(snap).has_value());
  owner next(nested, &now, 500);
  EXPECT_FALSE(next.t.adopt({}).has_value());
}

}  // namespace
}  // namespace otpd::supervisor

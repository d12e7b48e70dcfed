// The supervision tree as a pure state machine: a fake owner plays the
// processes, a fake clock drives intensity.
#include <csignal>
#include <map>
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

// Plays the daemon: spawns get fake pids and are ready at once (unless told
// to hold them), stops end with a shutdown exit.
struct harness {
  std::int64_t now = 1000;
  std::int64_t wall = 1'700'000'000'000;  // CLOCK_REALTIME, for last_exits
  tree t;
  pid_t next_pid = 100;
  std::vector<std::string> log;  // "spawn a", "stop b"
  std::vector<event> events;
  bool auto_ready = true;
  bool auto_stop = true;
  int exit_code = -1;
  std::string exit_detail;
  std::vector<std::uint64_t> timers;

  explicit harness(const std::string& yaml)
      : t(
            cfg_of(yaml), [this] { return now; }, 1, [this] { return wall; }) {}

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
            log.push_back((a.brutal ? "kill " : "stop ") + n->path);
            if (auto_stop) {
              t.on_exit(a.uid, a.brutal ? core::exit_reason::from_signal(SIGKILL)
                                        : core::exit_reason{core::exit_kind::shutdown, 0});
            }
            break;
          case action::kind::schedule:
            timers.push_back(a.uid);
            break;
          case action::kind::notify:
            events.push_back(a.ev);
            break;
          case action::kind::exit_node:
            exit_code = a.exit_code;
            exit_detail = a.ev.detail;
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
  pid_t pid(const std::string& who) { return get(who).pid; }
  void kill(const std::string& who, core::exit_reason r = {core::exit_kind::killed, 9}) {
    log.clear();
    t.on_exit(get(who).uid, r);
    run();
  }
  void start() {
    t.start();
    run();
    log.clear();
  }
};

const char* three(const char* strat, const char* extra = "") {
  static std::string s;
  s = std::string("supervisor:\n  strategy: ") + strat +
      "\n  max_restarts: 3\n  max_seconds: 5\n  children:\n"
      "    - {id: a, command: [/bin/true]}\n"
      "    - {id: b, command: [/bin/true]" +
      extra +
      "}\n"
      "    - {id: c, command: [/bin/true]}\n";
  return s.c_str();
}

TEST(Tree, StartsChildrenInOrder) {
  harness h(three("one_for_one"));
  h.t.start();
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a", "spawn b", "spawn c"}));
  EXPECT_EQ(h.t.root().state, child_state::running);
}

TEST(Tree, StartWaitsForReadinessOfEachChild) {
  harness h(three("one_for_one"));
  h.auto_ready = false;
  h.t.start();
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a"}));
  h.t.on_ready(h.get("a").uid);
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a", "spawn b"}));
}

TEST(Tree, OneForOneRestartsOnlyTheDeadChild) {
  harness h(three("one_for_one"));
  h.start();
  pid_t a = h.pid("a"), c = h.pid("c");
  h.kill("b");
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn b"}));
  EXPECT_EQ(h.pid("a"), a);
  EXPECT_EQ(h.pid("c"), c);
  EXPECT_EQ(h.get("b").restarts, 1);
}

TEST(Tree, OneForAllStopsInReverseAndStartsInOrder) {
  harness h(three("one_for_all"));
  h.start();
  h.kill("b");
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop c", "stop a", "spawn a", "spawn b", "spawn c"}));
}

TEST(Tree, RestForOneRestartsTheRest) {
  harness h(three("rest_for_one"));
  h.start();
  pid_t a = h.pid("a");
  h.kill("b");
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop c", "spawn b", "spawn c"}));
  EXPECT_EQ(h.pid("a"), a);
}

TEST(Tree, PermanentNormalExitIsRestarted) {
  harness h(three("one_for_one"));
  h.start();
  h.kill("a", core::exit_reason::normal());
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a"}));
}

TEST(Tree, TransientRestartsOnlyAfterAbnormalExit) {
  harness h(three("one_for_one", ", restart: transient"));
  h.start();
  h.kill("b", core::exit_reason::normal());
  EXPECT_TRUE(h.log.empty());
  EXPECT_EQ(h.get("b").state, child_state::stopped);
  auto started = h.t.start_child("b");
  ASSERT_TRUE(started.has_value()) << started.message();
  h.run();
  h.kill("b", core::exit_reason::code(1));
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn b"}));
  // Its own shutdown signal from outside is a normal stop.
  h.kill("b", core::exit_reason::from_signal(SIGTERM));
  EXPECT_TRUE(h.log.empty());
}

TEST(Tree, TransientSuccessExitCodesAreNormalExits) {
  harness h(three("one_for_one", ", restart: transient, success_exit_codes: [0, 3]"));
  h.start();
  h.kill("b", core::exit_reason::code(3));
  EXPECT_TRUE(h.log.empty());
  EXPECT_EQ(h.get("b").state, child_state::stopped);
  // The reason itself stays the real one.
  EXPECT_EQ(h.get("b").last_exit, core::exit_reason::code(3));
  ASSERT_TRUE(h.t.start_child("b").has_value());
  h.run();
  h.kill("b", core::exit_reason::code(4));
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn b"}));
  h.kill("b", core::exit_reason::normal());
  EXPECT_TRUE(h.log.empty());
  // shutdown and killed: a stop is normal, a SIGKILL is not.
  ASSERT_TRUE(h.t.start_child("b").has_value());
  h.run();
  h.kill("b", {core::exit_kind::shutdown, 0});
  EXPECT_TRUE(h.log.empty());
  ASSERT_TRUE(h.t.start_child("b").has_value());
  h.run();
  h.kill("b", core::exit_reason::from_signal(SIGKILL));
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn b"}));
}

TEST(Tree, TransientSuccessExitCodesReplaceTheDefault) {
  harness h(three("one_for_one", ", restart: transient, success_exit_codes: [2]"));
  h.start();
  h.kill("b", core::exit_reason::normal());
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn b"}));
  h.kill("b", core::exit_reason::code(2));
  EXPECT_TRUE(h.log.empty());
}

TEST(Tree, TemporaryIsNeverRestartedAndRestartsNobody) {
  harness h(three("one_for_all", ", restart: temporary"));
  h.start();
  h.kill("b", core::exit_reason::code(1));
  EXPECT_TRUE(h.log.empty());
  EXPECT_EQ(h.get("b").state, child_state::failed);
}

TEST(Tree, TemporaryDroppedBySiblingRestart) {
  harness h(three("one_for_all", ", restart: temporary"));
  h.start();
  h.kill("a");
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop c", "stop b", "spawn a", "spawn c"}));
  EXPECT_EQ(h.get("b").state, child_state::stopped);
}

TEST(Tree, OneForAllCountsAsOneRestart) {
  harness h(three("one_for_all"));  // max_restarts 3
  h.start();
  for (int i = 0; i < 3; ++i) {
    h.kill("a");
    h.now += 10;
  }
  EXPECT_EQ(h.exit_code, -1);
  h.kill("a");
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_NE(h.exit_detail.find("child a exited: killed"), std::string::npos) << h.exit_detail;
}

TEST(Tree, IntensityWindowIsExactMilliseconds) {
  harness h(three("one_for_one"));  // 3 in 5 s
  h.start();
  h.kill("a");  // t=1000
  h.now += 1;
  h.kill("a");  // 1001
  h.now += 1;
  h.kill("a");   // 1002
  h.now = 6001;  // the first restart (1000) is 5001 ms old: out of the window
  h.kill("a");
  EXPECT_EQ(h.exit_code, -1);
  h.now = 6001;  // 1001 is exactly 5000 ms old: still inside
  h.kill("a");
  EXPECT_EQ(h.exit_code, 1);
}

TEST(Tree, IntensityZeroGivesUpAtFirstRestart) {
  harness h(
      "supervisor:\n  strategy: one_for_one\n  max_restarts: 0\n  children:\n"
      "    - {id: t, command: [/bin/true], restart: temporary}\n"
      "    - {id: a, command: [/bin/true]}\n");
  h.start();
  h.kill("t");  // no restart: does not count
  EXPECT_EQ(h.exit_code, -1);
  h.kill("a");
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_EQ(h.log, (std::vector<std::string>{}));  // a is already dead; nothing else to stop
}

const char* nested =
    "supervisor:\n  strategy: one_for_one\n  max_restarts: 1\n  max_seconds: 10\n  children:\n"
    "    - {id: top, command: [/bin/true]}\n"
    "    - id: sub\n      strategy: one_for_one\n      max_restarts: 1\n      max_seconds: 10\n"
    "      children:\n"
    "        - {id: w, command: [/bin/true]}\n"
    "        - {id: tmp, command: [/bin/true], restart: temporary}\n";

TEST(Tree, SubSupervisorGivingUpIsRestartedByItsParent) {
  harness h(nested);
  h.start();
  h.kill("tmp");  // temporary: gone, no restart
  EXPECT_EQ(h.get("tmp").state, child_state::failed);
  h.kill("w");  // restart 1 of sub
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn sub/w"}));
  h.kill("w");  // sub gives up, exits shutdown; parent restarts it (its restart 1)
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn sub/w", "spawn sub/tmp"}));
  EXPECT_EQ(h.get("sub").restarts, 1);
  EXPECT_EQ(h.get("tmp").state, child_state::running);  // back with the subtree
  EXPECT_EQ(h.exit_code, -1);
  h.kill("w");
  h.kill("w");  // sub gives up again: parent's second restart > 1
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_NE(h.exit_detail.find("child sub exited: shutdown"), std::string::npos) << h.exit_detail;
}

// otpctl kill of a nested supervisor: OTP's exit(Sup, kill).
TEST(Tree, KillingANestedSupervisorKillsItsWorkersAtOnceThenItsParentRestartsIt) {
  harness h(nested);
  h.start();
  pid_t top = h.pid("top");
  h.auto_stop = false;
  ASSERT_TRUE(h.t.kill_supervisor("sub"));
  h.run();
  // Both at once, before either is reaped: not one stop after another.
  EXPECT_EQ(h.log, (std::vector<std::string>{"kill sub/w", "kill sub/tmp"}));
  EXPECT_EQ(h.get("sub").state, child_state::stopping);
  h.auto_stop = true;
  h.kill("tmp", core::exit_reason::from_signal(SIGKILL));
  EXPECT_EQ(h.log, (std::vector<std::string>{}));  // sub still waits for w
  h.kill("w", core::exit_reason::from_signal(SIGKILL));
  // sub ended with killed; its parent (one_for_one, permanent) restarts it.
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn sub/w", "spawn sub/tmp"}));
  EXPECT_EQ(h.get("sub").restarts, 1);
  EXPECT_EQ(h.get("sub").state, child_state::running);
  EXPECT_EQ(h.get("sub").last_exit.kind, core::exit_kind::killed);
  EXPECT_EQ(h.get("w").last_exit.kind, core::exit_kind::killed);
  EXPECT_EQ(h.pid("top"), top);
  bool stopped_killed = false;
  for (const event& e : h.events) {
    if (e.type == "supervisor_stopped" && e.path == "sub") {
      stopped_killed = e.has_reason && e.reason.kind == core::exit_kind::killed;
    }
  }
  EXPECT_TRUE(stopped_killed);
}

TEST(Tree, KilledSupervisorsCountTowardTheirParentsIntensity) {
  harness h(nested);  // the root allows 1 restart in 10 s
  h.start();
  ASSERT_TRUE(h.t.kill_supervisor("sub"));
  h.run();
  EXPECT_EQ(h.exit_code, -1);
  ASSERT_TRUE(h.t.kill_supervisor("sub"));
  h.run();
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_NE(h.exit_detail.find("child sub exited: killed"), std::string::npos) << h.exit_detail;
}

TEST(Tree, KilledSupervisorFollowsItsRestartTypeAndItsParentsStrategy) {
  const char* yaml =
      "supervisor:\n  strategy: one_for_all\n  max_restarts: 5\n  max_seconds: 10\n"
      "  children:\n"
      "    - {id: top, command: [/bin/true]}\n"
      "    - id: sub\n      strategy: one_for_one\n      restart: {R}\n      children:\n"
      "        - id: inner\n          strategy: one_for_one\n          children:\n"
      "            - {id: w, command: [/bin/true]}\n"
      "    - {id: last, command: [/bin/true]}\n";
  auto with = [&](const char* r) {
    std::string y = yaml;
    y.replace(y.find("{R}"), 3, r);
    return y;
  };
  {
    // transient: killed is abnormal, so one_for_all restarts everything.
    harness h(with("transient"));
    h.start();
    ASSERT_TRUE(h.t.kill_supervisor("sub"));
    h.run();
    EXPECT_EQ(h.log, (std::vector<std::string>{"kill sub/inner/w", "stop last", "stop top",
                                               "spawn top", "spawn sub/inner/w", "spawn last"}));
    EXPECT_EQ(h.get("sub/inner").last_exit.kind, core::exit_kind::killed);
  }
  {
    // temporary: never restarted, its siblings stay.
    harness h(with("temporary"));
    h.start();
    ASSERT_TRUE(h.t.kill_supervisor("sub/inner"));  // inner is permanent: sub restarts it
    h.run();
    EXPECT_EQ(h.log, (std::vector<std::string>{"kill sub/inner/w", "spawn sub/inner/w"}));
    h.log.clear();
    ASSERT_TRUE(h.t.kill_supervisor("sub"));
    h.run();
    EXPECT_EQ(h.log, (std::vector<std::string>{"kill sub/inner/w"}));
    EXPECT_EQ(h.get("sub").state, child_state::failed);  // not restarted, abnormal
    EXPECT_EQ(h.get("top").state, child_state::running);
  }
}

TEST(Tree, KillingASupervisorCutsAnOrderlyStopShortAndRefusesWhatIsNotOne) {
  harness h(nested);
  h.start();
  h.auto_stop = false;
  ASSERT_TRUE(h.t.stop_child("sub/w"));
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop sub/w"}));
  ASSERT_TRUE(h.t.kill_supervisor("sub"));
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop sub/w", "kill sub/w", "kill sub/tmp"}));
  EXPECT_FALSE(h.t.kill_supervisor("sub"));  // already being killed
  EXPECT_FALSE(h.t.kill_supervisor("top"));  // a worker: the daemon signals its process
  EXPECT_FALSE(h.t.kill_supervisor("nope"));
}

TEST(Tree, ShutdownStopsInReverseOrderDepthFirst) {
  harness h(nested);
  h.start();
  h.t.shutdown();
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop sub/tmp", "stop sub/w", "stop top"}));
  EXPECT_EQ(h.exit_code, 0);
}

TEST(Tree, ShutdownWaitsForEachChildToStop) {
  harness h(three("one_for_one"));
  h.start();
  h.auto_stop = false;
  h.t.shutdown();
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop c"}));
  h.t.on_exit(h.get("c").uid, core::exit_reason::from_signal(SIGTERM));
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop c", "stop b"}));
}

TEST(Tree, FailedInitialStartStopsStartedChildrenAndFailsTheNode) {
  harness h(three("one_for_one"));
  h.auto_ready = false;
  h.t.start();
  h.run();
  h.t.on_ready(h.get("a").uid);
  h.run();
  h.t.on_exit(h.get("b").uid, core::exit_reason::code(1));  // b dies before ready
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a", "spawn b", "stop a"}));
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_NE(h.exit_detail.find("b failed to start"), std::string::npos) << h.exit_detail;
}

TEST(Tree, OperatorStopHoldsTheChild) {
  harness h(three("one_for_one"));
  h.start();
  ASSERT_TRUE(h.t.stop_child("b").has_value());
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop b"}));
  EXPECT_EQ(h.get("b").state, child_state::stopped);
  ASSERT_TRUE(h.t.start_child("b").has_value());
  h.run();
  EXPECT_EQ(h.get("b").state, child_state::running);
  auto nope = h.t.start_child("nope");
  EXPECT_FALSE(nope.has_value());
  EXPECT_EQ(nope.message(), "no such child: nope");
}

TEST(Tree, SimpleOneForOneStartsAndTerminatesDynamicChildren) {
  harness h(
      "supervisor:\n  strategy: simple_one_for_one\n  template:\n"
      "    id: job\n    command: [/bin/echo]\n    restart: temporary\n");
  h.start();
  auto p1 = h.t.start_dynamic("/", {"x"});
  auto p2 = h.t.start_dynamic("/", {"y"});
  h.run();
  ASSERT_TRUE(p1.has_value() && p2.has_value()) << p1.message() << p2.message();
  EXPECT_EQ(*p1, "job-1");
  EXPECT_EQ(h.get("job-2").extra_args, std::vector<std::string>{"y"});
  h.kill("job-1", core::exit_reason::code(2));  // temporary: removed
  EXPECT_EQ(h.t.root().children.size(), 1u);
  ASSERT_TRUE(h.t.terminate_dynamic("/", "job-2").has_value());
  h.run();
  EXPECT_TRUE(h.t.root().children.empty());
}

TEST(Tree, BackoffDelaysTheRestart) {
  harness h(
      "supervisor:\n  strategy: one_for_one\n  max_restarts: 100\n  children:\n"
      "    - id: a\n      command: [/bin/true]\n"
      "      backoff: {initial: 100, max: 1000, jitter: 0}\n");
  h.start();
  h.kill("a");
  EXPECT_TRUE(h.log.empty());
  ASSERT_EQ(h.timers.size(), 1u);
  h.t.on_timer(h.timers[0]);
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a"}));
}

const char* backoff_tree =
    "supervisor:\n  strategy: one_for_one\n  max_restarts: 100\n  children:\n"
    "    - id: a\n      command: [/bin/true]\n"
    "      backoff: {initial: 100, max: 1000, jitter: 0}\n"
    "    - {id: b, command: [/bin/true]}\n";

TEST(Tree, BackoffIsAStateWithTheTimeOfTheNextStart) {
  harness h(backoff_tree);
  h.start();
  h.kill("a");
  EXPECT_EQ(h.get("a").state, child_state::backoff);
  EXPECT_EQ(h.get("a").next_start_ms, 1100);
  EXPECT_STREQ(to_string(h.get("a").state), "backoff");
  ASSERT_FALSE(h.events.empty());
  EXPECT_EQ(h.events.back().type, "restarting");
  EXPECT_NE(h.events.back().detail.find("backoff 100 ms"), std::string::npos)
      << h.events.back().detail;
  h.now = 1100;
  h.t.on_timer(h.timers.at(0));
  h.run();
  EXPECT_EQ(h.get("a").state, child_state::running);
  EXPECT_EQ(h.get("a").next_start_ms, 0);
  h.now = 1200;
  h.kill("a");  // the second delay doubles
  EXPECT_EQ(h.get("a").state, child_state::backoff);
  EXPECT_EQ(h.get("a").next_start_ms, 1400);
  // b has no backoff: never in that state.
  h.kill("b");
  EXPECT_EQ(h.get("b").state, child_state::running);
}

TEST(Tree, StopInBackoffLeavesItStoppedAndTheTimerDoesNothing) {
  harness h(backoff_tree);
  h.start();
  h.kill("a");
  ASSERT_EQ(h.get("a").state, child_state::backoff);
  ASSERT_TRUE(h.t.stop_child("a").has_value());
  h.run();
  EXPECT_EQ(h.get("a").state, child_state::stopped);
  EXPECT_EQ(h.get("a").next_start_ms, 0);
  EXPECT_TRUE(h.log.empty());  // no process to stop
  h.t.on_timer(h.timers.at(0));
  h.run();
  EXPECT_EQ(h.get("a").state, child_state::stopped);
  EXPECT_TRUE(h.log.empty());
  // An operator start during the delay starts it at once.
  ASSERT_TRUE(h.t.start_child("a").has_value());
  h.run();
  EXPECT_EQ(h.get("a").state, child_state::running);
}

TEST(Tree, StartInBackoffStartsAtOnceAndTheStaleTimerIsIgnored) {
  harness h(backoff_tree);
  h.start();
  h.kill("a");
  ASSERT_EQ(h.get("a").state, child_state::backoff);
  ASSERT_TRUE(h.t.start_child("a").has_value());
  h.run();
  EXPECT_EQ(h.log, (std::vector<std::string>{"spawn a"}));
  EXPECT_EQ(h.get("a").state, child_state::running);
  h.log.clear();
  h.t.on_timer(h.timers.at(0));
  h.run();
  EXPECT_TRUE(h.log.empty());
}

TEST(Tree, FailedStartWaitsInBackoffToo) {
  harness h(backoff_tree);
  h.start();
  h.kill("a");
  h.auto_ready = false;
  h.t.on_timer(h.timers.at(0));
  h.run();
  ASSERT_EQ(h.get("a").state, child_state::starting);
  h.t.on_exit(h.get("a").uid, {core::exit_kind::exec_failed, 2});
  h.run();
  EXPECT_EQ(h.get("a").state, child_state::backoff);
  EXPECT_EQ(h.timers.size(), 2u);
}

TEST(Tree, ShutdownDuringBackoffStopsTheNode) {
  harness h(backoff_tree);
  h.start();
  h.kill("a");
  h.t.shutdown();
  h.run();
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_EQ(h.get("a").state, child_state::stopped);
}

TEST(Tree, LastExitsKeepTheNewestTenWithWallTime) {
  harness h(three("one_for_one"));
  h.start();
  EXPECT_TRUE(h.get("a").last_exits.empty());
  for (int i = 1; i <= 12; ++i) {
    h.wall += 1000;
    h.now += 10000;  // out of the intensity window each time
    h.kill("a", core::exit_reason::code(i));
  }
  const auto& x = h.get("a").last_exits;
  ASSERT_EQ(x.size(), tree::max_last_exits);
  EXPECT_EQ(x.front().reason, core::exit_reason::code(3));
  EXPECT_EQ(x.front().wall_ms, 1'700'000'003'000);
  EXPECT_EQ(x.back().reason, core::exit_reason::code(12));
  EXPECT_EQ(x.back().wall_ms, 1'700'000'012'000);
  EXPECT_TRUE(h.get("b").last_exits.empty());
}

TEST(Tree, SupervisorExitsAreRecordedToo) {
  harness h(nested);
  h.start();
  h.kill("w");
  h.kill("w");  // sub gives up: its exit is shutdown
  ASSERT_EQ(h.get("sub").last_exits.size(), 1u);
  EXPECT_EQ(h.get("sub").last_exits[0].reason.kind, core::exit_kind::shutdown);
}

TEST(Tree, RestartsInWindowCountOnlyTheCurrentWindow) {
  harness h(three("one_for_one"));  // 3 in 5 s
  h.start();
  EXPECT_EQ(h.t.restarts_in_window(h.t.root()), 0);
  h.kill("a");
  h.now += 1000;
  h.kill("b");
  EXPECT_EQ(h.t.restarts_in_window(h.t.root()), 2);
  h.now += 4500;  // the first is 5500 ms old now
  EXPECT_EQ(h.t.restarts_in_window(h.t.root()), 1);
  h.now += 1000;
  EXPECT_EQ(h.t.restarts_in_window(h.t.root()), 0);
}

TEST(Tree, ReloadAddsRemovesAndChanges) {
  harness h(three("one_for_one"));
  h.start();
  pid_t a = h.pid("a");
  auto r =
      h.t.reload(cfg_of("supervisor:\n  strategy: one_for_one\n  children:\n"
                        "    - {id: a, command: [/bin/true]}\n"
                        "    - {id: b, command: [/bin/echo]}\n"
                        "    - {id: d, command: [/bin/true]}\n"));
  h.run();
  EXPECT_EQ(r.added, std::vector<std::string>{"d"});
  EXPECT_EQ(r.removed, std::vector<std::string>{"c"});
  EXPECT_EQ(r.changed, std::vector<std::string>{"b"});
  EXPECT_EQ(h.log, (std::vector<std::string>{"stop c", "stop b", "spawn b", "spawn d"}));
  EXPECT_EQ(h.pid("a"), a);
  EXPECT_FALSE(h.t.resolve("c").has_value());
}

// The plan names what reload() will do, and changes nothing itself.
TEST(Tree, PlanReloadSaysWhatReloadWouldDoAndDoesNothing) {
  harness h(three("one_for_one"));
  h.start();
  pid_t a = h.pid("a");
  pid_t b = h.pid("b");
  auto next = cfg_of(
      "supervisor:\n  strategy: one_for_one\n  children:\n"
      "    - {id: a, command: [/bin/true]}\n"
      "    - {id: b, command: [/bin/echo], env: {X: '1'}}\n"
      "    - {id: d, command: [/bin/true]}\n"
      "    - {id: s, strategy: one_for_all, children: [{id: w, command: [/bin/true]}]}\n");
  h.log.clear();
  auto plan = h.t.plan_reload(*next);
  h.run();
  EXPECT_TRUE(h.log.empty());  // no action at all
  EXPECT_EQ(h.pid("a"), a);
  EXPECT_EQ(h.pid("b"), b);
  EXPECT_TRUE(h.t.resolve("c").has_value());
  EXPECT_EQ(plan.added, (std::vector<std::string>{"d", "s"}));
  EXPECT_EQ(plan.removed, std::vector<std::string>{"c"});
  EXPECT_EQ(plan.changed, std::vector<std::string>{"b"});
  EXPECT_EQ(plan.untouched, std::vector<std::string>{"a"});
  ASSERT_EQ(plan.changed_keys.size(), 1u);
  EXPECT_EQ(plan.changed_keys[0].first, "b");
  EXPECT_EQ(plan.changed_keys[0].second, (std::vector<std::string>{"command", "env"}));
  // And reload() agrees with it.
  auto r = h.t.reload(next);
  EXPECT_EQ(r.added, plan.added);
  EXPECT_EQ(r.removed, plan.removed);
  EXPECT_EQ(r.changed, plan.changed);
}

}  // namespace
}  // namespace otpd::supervisor

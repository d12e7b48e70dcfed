// One_for_one restarts of a running supervisor do not wait for each other:
// the tree asks for every replacement at once, so the daemon can start them
// concurrently. Failed starts still come back and count toward intensity.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/supervisor/tree.hpp>

namespace otpd::supervisor {
namespace {

struct owner {
  std::int64_t now = 1000;
  tree t;
  pid_t next_pid = 100;
  std::vector<std::string> spawned;
  std::vector<std::uint64_t> pending;  // spawned, not yet ready
  int exit_code = -1;

  explicit owner(const std::string& yaml)
      : t(
            [&] {
              auto r = parse_config(yaml, "t.yaml");
              EXPECT_TRUE(r.has_value()) << r.message();
              return *r;
            }(),
            [this] { return now; }) {}

  void run() {
    while (t.has_actions()) {
      for (auto& a : t.take_actions()) {
        if (a.k == action::kind::spawn) {
          spawned.push_back(t.find(a.uid)->path);
          t.on_spawned(a.uid, next_pid++);
          pending.push_back(a.uid);
        } else if (a.k == action::kind::exit_node) {
          exit_code = a.exit_code;
        }
      }
    }
  }
  void ready_all() {
    auto p = std::move(pending);
    pending.clear();
    for (auto uid : p) {
      t.on_ready(uid);
    }
    run();
  }
  std::uint64_t uid(const std::string& path) { return (*t.resolve(path))->uid; }
};

const char* yaml_of(const char* strat, int max_restarts) {
  static std::string s;
  s = std::string("supervisor:\n  strategy: ") + strat +
      "\n  max_restarts: " + std::to_string(max_restarts) +
      "\n  max_seconds: 5\n  children:\n"
      "    - {id: a, command: [/bin/true]}\n"
      "    - {id: b, command: [/bin/true]}\n"
      "    - {id: c, command: [/bin/true]}\n";
  return s.c_str();
}

TEST(ConcurrentRestart, OneForOneAsksForEveryReplacementBeforeAnyIsReady) {
  owner o(yaml_of("one_for_one", 10));
  o.t.start();
  o.run();
  o.ready_all();
  o.run();
  o.ready_all();
  o.ready_all();
  ASSERT_EQ(o.spawned, (std::vector<std::string>{"a", "b", "c"}));
  o.spawned.clear();
  for (const char* p : {"c", "a", "b"}) {
    o.t.on_exit(o.uid(p), {core::exit_kind::killed, 9});
    o.run();
  }
  // None is ready yet, and all three have been asked for, in death order.
  EXPECT_EQ(o.spawned, (std::vector<std::string>{"c", "a", "b"}));
  EXPECT_EQ(o.pending.size(), 3U);
  o.ready_all();
  for (const char* p : {"a", "b", "c"}) {
    EXPECT_EQ(o.t.find(o.uid(p))->state, child_state::running) << p;
    EXPECT_EQ(o.t.find(o.uid(p))->restarts, 1) << p;
  }
}

TEST(ConcurrentRestart, FailedConcurrentStartsAreRetriedAndCountTowardIntensity) {
  owner o(yaml_of("one_for_one", 3));
  o.t.start();
  o.run();
  o.ready_all();
  o.ready_all();
  o.ready_all();
  o.t.on_exit(o.uid("a"), {core::exit_kind::killed, 9});
  o.run();
  o.t.on_exit(o.uid("b"), {core::exit_kind::killed, 9});
  o.run();
  // Both replacements fail to exec: each failure is one more restart. 2
  // deaths + 2 failed starts = 4 restarts > 3: the root gives up.
  o.pending.clear();
  o.spawned.clear();
  o.t.on_exit(o.uid("a"), {core::exit_kind::exec_failed, 2});
  o.run();
  EXPECT_EQ(o.t.root().phase, sup_phase::running);
  EXPECT_EQ(o.spawned, (std::vector<std::string>{"a"}));  // tried again
  o.t.on_exit(o.uid("b"), {core::exit_kind::exec_failed, 2});
  o.run();
  // The fourth restart exceeds intensity: the root stops its children (c
  // has not exited yet, so otpd has not been told to exit).
  EXPECT_EQ(o.t.root().phase, sup_phase::giving_up);
  EXPECT_EQ(o.exit_code, -1);
}

TEST(ConcurrentRestart, RestForOneStillRestartsInOrderOneAtATime) {
  owner o(yaml_of("rest_for_one", 10));
  o.t.start();
  o.run();
  o.ready_all();
  o.ready_all();
  o.ready_all();
  o.spawned.clear();
  o.t.on_exit(o.uid("a"), {core::exit_kind::killed, 9});
  o.run();
  // b and c are asked to stop first; nothing is spawned before they exit.
  EXPECT_TRUE(o.spawned.empty());
}

}  // namespace
}  // namespace otpd::supervisor

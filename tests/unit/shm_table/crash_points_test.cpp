// Every write killed at each of its steps in turn (fault injection walks
// the crash points 1, 2, ... until the write completes): the surviving
// process first only reads (readers must repair the dead writer's stripe
// themselves), and sees every key either as before the write or as after it,
// never anything else; then verify() passes.

#include <signal.h>
#include <sys/wait.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/log.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/shm_table/codec.hpp>
#include <otpd/shm_table/fault_injection.hpp>
#include <otpd/shm_table/table.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::shm_table::test {
namespace {

using namespace std::chrono_literals;
using state = std::optional<std::string>;

struct scenario {
  std::string name;
  std::function<void(table&)> op;
  // Keys whose state may differ from the baseline, and the states allowed.
  std::map<std::string, std::set<state>> allowed;
};

const std::vector<std::string> kBase{"a", "b", "c", "d", "e", "f"};

std::string old_value(const std::string& k) {
  return "old-" + k;
}

class CrashPoints : public shm_fixture, public ::testing::WithParamInterface<table_type> {
 protected:
  table baseline() {
    (void)table::remove(node(), "cp");
    table_options o;
    o.type = GetParam();
    o.access = access_mode::public_table;
    o.max_entries = 8;
    o.stripes = 1;  // every key in the stripe the killed writer held
    o.policy = eviction::lru;
    auto t = table::create(node(), "cp", o);
    EXPECT_TRUE(t);
    for (const auto& k : kBase) {
      EXPECT_TRUE(t->insert(k, old_value(k)));
    }
    EXPECT_TRUE(t->insert("ctr", encode_int(5)));
    return std::move(*t);
  }

  void run(const scenario& sc) {
    int kills = 0;
    for (int point = 1; point < 500; ++point) {
      table t = baseline();
      core::spawn_options so;
      auto c = core::spawn_function(so, [&] {
        auto w = table::open(node(), "cp");
        if (!w) {
          return 1;
        }
        fault_injection::crash_at_point(point);
        sc.op(*w);
        return 0;
      });
      ASSERT_TRUE(c);
      auto e = core::reap(c->pidfd.get());
      bool killed = e.code == CLD_KILLED;
      if (!killed) {
        ASSERT_EQ(e.code, CLD_EXITED);
        ASSERT_EQ(e.status, 0);
      }
      // Reads first: only a reader is there to repair the stripe.
      std::vector<std::string> keys = kBase;
      keys.emplace_back("ctr");
      keys.emplace_back("n");
      keys.emplace_back("n2");
      for (const auto& k : keys) {
        state got = t.lookup(k);
        auto it = sc.allowed.find(k);
        if (it != sc.allowed.end()) {
          EXPECT_TRUE(it->second.count(got) == 1)
              << sc.name << " killed at point " << point << ": key " << k << " is "
              << got.value_or("<absent>");
        } else {
          state want =
              k == "ctr" ? state(encode_int(5)) : (k[0] == 'n' ? state() : state(old_value(k)));
          EXPECT_EQ(got, want) << sc.name << " killed at point " << point << ": key " << k;
        }
      }
      if (killed) {
        ++kills;
      }
      std::string why;
      ASSERT_TRUE(t.verify(&why)) << sc.name << " killed at point " << point << ": " << why;
      if (!killed) {
        break;
      }
    }
    EXPECT_GE(kills, 3) << sc.name;
    kills_ += kills;
  }

  int kills_ = 0;
};

TEST_P(CrashPoints, EveryWriteIsAtomicAtEveryStep) {
  core::set_log_level(core::log_level::error);
  const state absent;
  std::vector<scenario> all = {
      {"insert new", [](table& t) { (void)t.insert("n", "new"); }, {{"n", {absent, "new"}}}},
      {"overwrite",
       [](table& t) { (void)t.insert("c", "a longer new value for c"); },
       {{"c", {old_value("c"), "a longer new value for c"}}}},
      {"erase", [](table& t) { (void)t.erase("d"); }, {{"d", {old_value("d"), absent}}}},
      {"take", [](table& t) { (void)t.take("e"); }, {{"e", {old_value("e"), absent}}}},
      {"update_counter",
       [](table& t) { (void)t.update_counter("ctr", 1); },
       {{"ctr", {encode_int(5), encode_int(6)}}}},
      // The 8th entry fits; the 9th evicts the least recently used ("a").
      {"insert evicting",
       [](table& t) {
         (void)t.insert("n", "new");
         (void)t.insert("n2", "new2");
       },
       {{"n", {absent, "new"}}, {"n2", {absent, "new2"}}, {"a", {old_value("a"), absent}}}},
      {"select_delete",
       [](table& t) {
         (void)t.select_delete(
             [](std::string_view k, std::string_view) { return k == "b" || k == "f"; });
       },
       {{"b", {old_value("b"), absent}}, {"f", {old_value("f"), absent}}}},
      {"clear", [](table& t) { (void)t.clear(); }, {}},
  };
  // clear may remove any key, one committed step at a time.
  for (const auto& k : kBase) {
    all.back().allowed[k] = {old_value(k), absent};
  }
  all.back().allowed["ctr"] = {encode_int(5), absent};
  for (const auto& sc : all) {
    run(sc);
  }
  std::printf("%s: %d writes killed at a crash point\n", to_string(GetParam()), kills_);
}

TEST_P(CrashPoints, ReadersRepairADeadWritersStripe) {
  core::set_log_level(core::log_level::error);
  table t = baseline();
  // Kill a writer right after its first undo record: the stripe is marked
  // busy (odd sequence) and its lock belongs to a dead process.
  core::spawn_options so;
  auto c = core::spawn_function(so, [&] {
    auto w = table::open(node(), "cp");
    fault_injection::crash_at_point(2);
    (void)w->insert("c", "never acknowledged");
    return 0;
  });
  ASSERT_TRUE(c);
  auto e = core::reap(c->pidfd.get());
  ASSERT_EQ(e.code, CLD_KILLED);
  std::uint64_t before = t.info().repairs;
  EXPECT_EQ(t.lookup("c"), old_value("c"));  // a pure read gets through
  EXPECT_EQ(t.info().repairs, before + 1);
  EXPECT_EQ(t.repairs(), 1u);  // and it was this reader that repaired
  std::string why;
  EXPECT_TRUE(t.verify(&why)) << why;
}

INSTANTIATE_TEST_SUITE_P(ShmTable, CrashPoints,
                         ::testing::Values(table_type::set, table_type::ordered_set),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace otpd::shm_table::test

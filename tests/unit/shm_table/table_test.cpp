#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/spawn.hpp>
#include <otpd/shm_table/codec.hpp>
#include <otpd/shm_table/table.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::shm_table::test {
namespace {

using namespace std::chrono_literals;
using core::errc;

// Runs fn in a forked child; returns its exit code (-signal when killed).
int in_child(const std::function<int()>& fn) {
  core::spawn_options o;
  o.death_signal = SIGKILL;
  auto c = core::spawn_function(o, fn);
  if (!c) {
    return -1000;
  }
  auto e = core::reap(c->pidfd.get());
  return e.code == CLD_EXITED ? e.status : -e.status;
}

class BothTypes : public shm_fixture, public ::testing::WithParamInterface<table_type> {
 protected:
  table make(table_options o = {}) {
    o.type = GetParam();
    auto t = table::create(node(), "t", o);
    EXPECT_TRUE(t) << t.error().message();
    return std::move(*t);
  }
};

TEST_P(BothTypes, InsertLookupMemberEraseTake) {
  table t = make();
  ASSERT_TRUE(t.insert("alpha", "1"));
  ASSERT_TRUE(t.insert("beta", "2"));
  EXPECT_EQ(t.lookup("alpha"), "1");
  EXPECT_EQ(t.lookup("beta"), "2");
  EXPECT_EQ(t.lookup("gamma"), std::nullopt);
  EXPECT_TRUE(t.member("alpha"));
  EXPECT_FALSE(t.member("gamma"));
  ASSERT_TRUE(t.insert("alpha", "one, longer now"));
  EXPECT_EQ(t.lookup("alpha"), "one, longer now");
  EXPECT_EQ(t.size(), 2u);
  auto e = t.erase("alpha");
  ASSERT_TRUE(e);
  EXPECT_TRUE(*e);
  auto e2 = t.erase("alpha");
  ASSERT_TRUE(e2);
  EXPECT_FALSE(*e2);
  auto tk = t.take("beta");
  ASSERT_TRUE(tk);
  EXPECT_EQ(*tk, "2");
  EXPECT_EQ(t.lookup("beta"), std::nullopt);
  auto tk2 = t.take("beta");
  ASSERT_TRUE(tk2);
  EXPECT_EQ(*tk2, std::nullopt);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_TRUE(t.verify());
}

// Keys of every length class the hash reads differently (1-3, 4-7, 8-16 and
// over 16 bytes), half of them present, some expired: a batch must answer
// exactly as one lookup per key does, across batch boundaries.
TEST_P(BothTypes, LookupManyAnswersAsLookupDoes) {
  for (auto policy : {eviction::none, eviction::lru}) {
    table_options o;
    o.max_entries = 2000;
    o.policy = policy;
    o.type = GetParam();
    auto made = table::create(node(), policy == eviction::lru ? "lru" : "plain", o);
    ASSERT_TRUE(made) << made.error().message();
    table& t = *made;
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; ++i) {
      std::string k = "k" + std::to_string(i);
      k.resize(static_cast<std::size_t>(1 + i % 40), static_cast<char>('a' + i % 26));
      k[0] = static_cast<char>(i % 251);
      k += std::to_string(i);
      keys.push_back(k);
      if (i % 2 == 0) {
        ASSERT_TRUE(t.insert(k, "value of " + k, i % 10 == 0 ? 1ms : 0ms));
      }
    }
    // Every 1 ms entry has expired once the last one inserted has.
    ASSERT_TRUE(otpd::testing::wait_until([&] { return !t.member(keys[990]); }, 5000ms));
    std::vector<std::string_view> views(keys.begin(), keys.end());
    std::vector<std::string> out(keys.size(), "stale");
    std::unique_ptr<bool[]> found(new bool[keys.size()]);
    auto n = t.lookup_many(views, out, std::span<bool>(found.get(), keys.size()));
    ASSERT_TRUE(n) << n.error().message();
    std::size_t expect = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto one = t.lookup(keys[i]);
      EXPECT_EQ(found[i], one.has_value()) << "key " << i;
      if (one) {
        ++expect;
        EXPECT_EQ(out[i], *one) << "key " << i;
        EXPECT_EQ(*one, "value of " + keys[i]);
      }
      EXPECT_EQ(one.has_value(), i % 2 == 0 && i % 10 != 0) << "key " << i;
    }
    EXPECT_EQ(*n, expect);
    EXPECT_EQ(expect, 400u);
    // Output spans shorter than the keys are refused, not overrun.
    auto bad = t.lookup_many(views, std::span<std::string>(out.data(), 10),
                             std::span<bool>(found.get(), keys.size()));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), errc::invalid_argument);
    EXPECT_TRUE(t.verify());
  }
}

// Keys chosen to collide under a fixed, public hash (here: every key starts
// with one of the hash's multiplier constants, which once made the mixing
// step forget the rest of the key) must still spread over the stripes: a
// full table of them fits, with no stripe refusing early.
class ShmTableHash : public shm_fixture {};

TEST_F(ShmTableHash, ChosenKeysDoNotPileIntoOneStripe) {
  table_options o;
  o.max_entries = 4000;
  o.max_item_bytes = 32;
  auto made = table::create(node(), "chosen", o);
  ASSERT_TRUE(made) << made.error().message();
  const std::uint64_t k1 = 0xe7037ed1a0b428dbULL;
  for (std::uint32_t i = 0; i < o.max_entries; ++i) {
    std::string key(16, '\0');
    std::memcpy(key.data(), &k1, 8);
    std::memcpy(key.data() + 8, &i, 4);
    auto r = made->insert(key, "v");
    ASSERT_TRUE(r) << "insert " << i << ": " << r.error().message();
  }
  EXPECT_EQ(made->size(), o.max_entries);
  EXPECT_TRUE(made->verify());
}

TEST_P(BothTypes, InsertNewRefusesAPresentKey) {
  table t = make();
  auto a = t.insert_new("k", "first");
  ASSERT_TRUE(a);
  EXPECT_TRUE(*a);
  auto b = t.insert_new("k", "second");
  ASSERT_TRUE(b);
  EXPECT_FALSE(*b);
  EXPECT_EQ(t.lookup("k"), "first");
}

TEST_P(BothTypes, UpdateCounterCreatesAndIncrements) {
  table t = make();
  auto a = t.update_counter("hits", 5, 100);
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, 105);
  auto b = t.update_counter("hits", -7);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 98);
  EXPECT_EQ(lookup_int(t, "hits"), 98);
  ASSERT_TRUE(t.insert("text", "not a counter"));
  EXPECT_EQ(t.update_counter("text", 1).error(), errc::invalid_argument);
}

TEST_P(BothTypes, SelectSelectDeleteFoldClear) {
  table t = make();
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(t.insert(fmt::format("k{:02}", i), std::to_string(i)));
  }
  auto even = t.select(
      [](std::string_view, std::string_view v) { return std::stoi(std::string(v)) % 2 == 0; });
  EXPECT_EQ(even.size(), 25u);
  auto del = t.select_delete([](std::string_view k, std::string_view) { return k < "k10"; });
  ASSERT_TRUE(del);
  EXPECT_EQ(*del, 10u);
  EXPECT_EQ(t.size(), 40u);
  EXPECT_FALSE(t.member("k05"));
  int sum = 0;
  int n = 0;
  t.fold([&](const entry& e) {
    sum += std::stoi(e.value);
    ++n;
  });
  EXPECT_EQ(n, 40);
  EXPECT_EQ(sum, (10 + 49) * 40 / 2);
  EXPECT_TRUE(t.verify());
  ASSERT_TRUE(t.clear());
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.lookup("k20"), std::nullopt);
  EXPECT_TRUE(t.verify());
}

TEST_P(BothTypes, RandomOperationsMatchAModel) {
  table_options o;
  o.max_entries = 2000;
  table t = make(o);
  std::map<std::string, std::string> model;
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::string k = fmt::format("key{}", rng() % 1500);
    switch (rng() % 4) {
      case 0:
      case 1: {
        std::string v(rng() % 200, static_cast<char>('a' + rng() % 26));
        ASSERT_TRUE(t.insert(k, v));
        model[k] = v;
        break;
      }
      case 2: {
        auto e = t.erase(k);
        ASSERT_TRUE(e);
        EXPECT_EQ(*e, model.erase(k) == 1);
        break;
      }
      default: {
        auto it = model.find(k);
        EXPECT_EQ(t.lookup(k), it == model.end() ? std::nullopt : std::optional(it->second));
      }
    }
  }
  EXPECT_EQ(t.size(), model.size());
  std::string why;
  EXPECT_TRUE(t.verify(&why)) << why;
  std::map<std::string, std::string> seen;
  t.fold([&](const entry& e) { seen[e.key] = e.value; });
  EXPECT_EQ(seen, model);
}

TEST_P(BothTypes, ReopenedByNameSeesTheData) {
  {
    table t = make();
    ASSERT_TRUE(t.insert("persist", "yes"));
  }
  auto again = table::create(node(), "t", {});
  EXPECT_EQ(again.error(), errc::already_exists);
  auto t = table::open(node(), "t");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->lookup("persist"), "yes");
  EXPECT_EQ(t->info().type, GetParam());
  ASSERT_TRUE(table::remove(node(), "t"));
  EXPECT_EQ(table::open(node(), "t").error(), errc::not_found);
  // The mapping stays usable until dropped.
  EXPECT_EQ(t->lookup("persist"), "yes");
}

TEST_P(BothTypes, ExpiredEntryIsInvisibleAtOnceAndSweptLater) {
  table t = make();
  ASSERT_TRUE(t.insert("short", "v", 60ms));
  ASSERT_TRUE(t.insert("forever", "v"));
  EXPECT_EQ(t.lookup("short"), "v");
  ASSERT_TRUE(otpd::testing::wait_until([&] { return !t.lookup("short"); }, 5000ms));
  EXPECT_FALSE(t.member("short"));
  EXPECT_TRUE(t.select([](auto, auto) { return true; }).size() == 1);
  EXPECT_EQ(t.size(), 2u);  // still stored until the sweep
  auto n = t.sweep();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(t.size(), 1u);
  // An insert_new over an expired key succeeds.
  ASSERT_TRUE(t.insert("again", "old", 1ms));
  ASSERT_TRUE(otpd::testing::wait_until([&] { return !t.member("again"); }, 5000ms));
  auto fresh = t.insert_new("again", "new");
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(*fresh);
  EXPECT_EQ(t.lookup("again"), "new");
  EXPECT_TRUE(t.verify());
}

TEST_P(BothTypes, FullTableRefusesWithTableFull) {
  table_options o;
  o.max_entries = 4;
  o.stripes = 1;
  table t = make(o);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(t.insert(std::to_string(i), "v"));
  }
  EXPECT_EQ(t.insert("4", "v").error(), errc::table_full);
  EXPECT_EQ(t.update_counter("c", 1).error(), errc::table_full);
  // Overwrites of present keys still work; nothing was lost.
  EXPECT_TRUE(t.insert("0", "w"));
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(t.member(std::to_string(i)));
  }
  EXPECT_EQ(t.insert(std::string(300, 'k'), "v").error(), errc::too_large);
  EXPECT_TRUE(t.verify());
}

TEST_P(BothTypes, ByteBudgetRefusesWithTableFull) {
  table_options o;
  o.max_entries = 100;
  o.max_bytes = 100;
  table t = make(o);
  ASSERT_TRUE(t.insert("a", std::string(60, 'x')));
  EXPECT_EQ(t.insert("b", std::string(60, 'x')).error(), errc::table_full);
  EXPECT_EQ(t.insert("a", std::string(120, 'x')).error(), errc::table_full);
  EXPECT_EQ(t.lookup("a"), std::string(60, 'x'));  // the refused write changed nothing
  ASSERT_TRUE(t.insert("b", std::string(30, 'x')));
  EXPECT_EQ(t.info().payload_bytes, 61u + 31u);
  EXPECT_TRUE(t.verify());
}

TEST_P(BothTypes, LruEvictsTheLeastRecentlyUsed) {
  table_options o;
  o.max_entries = 3;
  o.stripes = 1;
  o.policy = eviction::lru;
  table t = make(o);
  ASSERT_TRUE(t.insert("a", "1"));
  ASSERT_TRUE(t.insert("b", "2"));
  ASSERT_TRUE(t.insert("c", "3"));
  EXPECT_EQ(t.lookup("a"), "1");  // a is now more recent than b
  ASSERT_TRUE(t.insert("d", "4"));
  EXPECT_FALSE(t.member("b"));
  EXPECT_TRUE(t.member("a"));
  EXPECT_TRUE(t.member("c"));
  EXPECT_TRUE(t.member("d"));
  EXPECT_EQ(t.size(), 3u);
  EXPECT_TRUE(t.verify());
}

TEST_P(BothTypes, OneBigInsertMayEvictManySmallEntries) {
  table_options o;
  o.max_entries = 1000;
  o.max_bytes = 400;
  o.stripes = 1;
  o.policy = eviction::lru;
  table t = make(o);
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(t.insert(fmt::format("{:02x}", i), "v"));  // 3 bytes each: 450 > 400
  }
  EXPECT_LE(t.info().payload_bytes, 400u);
  ASSERT_TRUE(t.insert("big", std::string(250, 'b')));
  EXPECT_LE(t.info().payload_bytes, 400u);
  EXPECT_EQ(t.lookup("big"), std::string(250, 'b'));
  EXPECT_TRUE(t.member("95"));  // the most recent small ones stay
  std::string why;
  EXPECT_TRUE(t.verify(&why)) << why;
}

TEST_P(BothTypes, NearestExpiryEvictsTheSoonestToExpire) {
  table_options o;
  o.max_entries = 3;
  o.stripes = 1;
  o.policy = eviction::nearest_expiry;
  table t = make(o);
  ASSERT_TRUE(t.insert("late", "1", 60s));
  ASSERT_TRUE(t.insert("soon", "2", 30s));
  ASSERT_TRUE(t.insert("never", "3"));
  ASSERT_TRUE(t.insert("new", "4", 90s));
  EXPECT_FALSE(t.member("soon"));
  EXPECT_TRUE(t.member("late"));
  EXPECT_TRUE(t.member("never"));
  ASSERT_TRUE(t.insert("new2", "5"));
  EXPECT_FALSE(t.member("late"));
  ASSERT_TRUE(t.insert("new3", "6"));  // evicts "new" (the last with a TTL)
  // Only entries without a TTL are left: nothing may be evicted.
  EXPECT_EQ(t.insert("new4", "7").error(), errc::table_full);
  EXPECT_TRUE(t.member("never"));
  EXPECT_TRUE(t.verify());
}

TEST_P(BothTypes, ProtectedTableRefusesWritesFromOtherProcesses) {
  table t = make();
  ASSERT_TRUE(t.insert("k", "owner's"));
  int rc = in_child([&] {
    auto other = table::open(node(), "t");
    if (!other) {
      return 1;
    }
    if (other->lookup("k") != "owner's") {
      return 2;  // reads are open to everyone
    }
    if (other->insert("k", "intruder").error() != errc::access_denied ||
        other->erase("k").error() != errc::access_denied ||
        other->update_counter("n", 1).error() != errc::access_denied ||
        other->clear().error() != errc::access_denied) {
      return 3;
    }
    if (other->adopt().error() != errc::busy) {
      return 4;  // the owner is alive
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(t.lookup("k"), "owner's");
}

TEST_P(BothTypes, PublicTableTakesWritesFromAnyProcess) {
  table_options o;
  o.access = access_mode::public_table;
  table t = make(o);
  int rc = in_child([&] {
    auto other = table::open(node(), "t");
    return other && other->insert("from", "child") ? 0 : 1;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(t.lookup("from"), "child");
}

INSTANTIATE_TEST_SUITE_P(ShmTable, BothTypes,
                         ::testing::Values(table_type::set, table_type::ordered_set),
                         [](const auto& info) { return std::string(to_string(info.param)); });

class OrderedSet : public shm_fixture {};

TEST_F(OrderedSet, KeysComeInOrder) {
  table_options o;
  o.type = table_type::ordered_set;
  auto t = table::create(node(), "o", o);
  ASSERT_TRUE(t);
  std::vector<int> nums{42, -7, 0, 1000, 5, -300, 17};
  for (int n : nums) {
    ASSERT_TRUE(t->insert(encode_ordered_int(n), std::to_string(n)));
  }
  std::sort(nums.begin(), nums.end());
  auto f = t->first();
  ASSERT_TRUE(f && *f);
  EXPECT_EQ(decode_ordered_int(**f), -300);
  auto l = t->last();
  ASSERT_TRUE(l && *l);
  EXPECT_EQ(decode_ordered_int(**l), 1000);
  std::vector<int> walked;
  for (auto k = t->first(); k && *k; k = t->next(**k)) {
    walked.push_back(static_cast<int>(*decode_ordered_int(**k)));
  }
  EXPECT_EQ(walked, nums);
  auto r = t->range(encode_ordered_int(0), encode_ordered_int(42));
  ASSERT_TRUE(r);
  std::vector<std::string> vals;
  for (const auto& e : *r) {
    vals.push_back(e.value);
  }
  EXPECT_EQ(vals, (std::vector<std::string>{"0", "5", "17"}));
  auto lim = t->range("", "", 2);
  ASSERT_TRUE(lim);
  EXPECT_EQ(lim->size(), 2u);
  auto after_last = t->next(encode_ordered_int(1000));
  ASSERT_TRUE(after_last);
  EXPECT_EQ(*after_last, std::nullopt);
  auto sel = t->select([](auto, auto) { return true; });
  ASSERT_EQ(sel.size(), nums.size());
  EXPECT_EQ(decode_ordered_int(sel.front().key), -300);
  EXPECT_TRUE(t->verify());
}

TEST_F(OrderedSet, OrderedOperationsAreRefusedOnASet) {
  auto t = table::create(node(), "s", {});
  ASSERT_TRUE(t);
  EXPECT_EQ(t->first().error(), errc::invalid_argument);
  EXPECT_EQ(t->next("a").error(), errc::invalid_argument);
  EXPECT_EQ(t->range("a", "b").error(), errc::invalid_argument);
}

class Segments : public shm_fixture {};

TEST_F(Segments, ModeIs0600AndListedUnderTheNode) {
  auto a = table::create(node(), "alpha", {});
  auto b = table::create(node(), "beta.v2", {});
  ASSERT_TRUE(a && b);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + segment_name(node(), "alpha")).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(list_tables(node()), (std::vector<std::string>{"alpha", "beta.v2"}));
  EXPECT_EQ(table::create(node(), "bad/name", {}).error(), errc::invalid_argument);
  EXPECT_EQ(table::create("bad.node", "x", {}).error(), errc::invalid_argument);
  auto i = a->info();
  EXPECT_EQ(i.owner, ::getpid());
  EXPECT_TRUE(i.owner_alive);
  EXPECT_EQ(i.memory, a->memory());
  EXPECT_GT(i.memory, 1024u * 256u);
}

TEST_F(Segments, StaleSegmentsAreCleanedAndGoodOnesKept) {
  auto good = table::create(node(), "good", {});
  ASSERT_TRUE(good);
  ASSERT_TRUE(good->insert("k", "v"));
  // A creator that died before publishing its table: a segment of zeros.
  std::string stale = "/" + segment_name(node(), "halfmade");
  int fd = ::shm_open(stale.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 65536), 0);
  ::close(fd);
  EXPECT_EQ(table::open(node(), "halfmade").error(), errc::busy);
  auto removed = remove_stale(node());
  EXPECT_EQ(removed, (std::vector<std::string>{"halfmade"}));
  EXPECT_EQ(list_tables(node()), (std::vector<std::string>{"good"}));
  auto again = table::open(node(), "good");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->lookup("k"), "v");
}

TEST_F(Segments, TypedHelpers) {
  auto t = table::create(node(), "typed", {});
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->insert("n", encode_int(-12345678901)));
  EXPECT_EQ(lookup_int(*t, "n"), -12345678901);
  using term = std::tuple<std::string, int, std::vector<int>>;
  ASSERT_TRUE(insert_term(*t, "term", term{"ok", 7, {1, 2, 3}}));
  auto back = lookup_term<term>(*t, "term");
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, (term{"ok", 7, {1, 2, 3}}));
  EXPECT_EQ((lookup_term<std::map<std::string, int>>(*t, "n")), std::nullopt);
  EXPECT_EQ(decode_int("short"), std::nullopt);
  for (std::int64_t a : {-5, -1, 0, 1, 3}) {
    EXPECT_LT(encode_ordered_int(a), encode_ordered_int(a + 1));
  }
}

}  // namespace
}  // namespace otpd::shm_table::test

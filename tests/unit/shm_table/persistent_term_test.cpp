#include <sys/wait.h>

#include <string>

#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/spawn.hpp>
#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::shm_table::test {
namespace {

using core::errc;

class PersistentTerm : public shm_fixture {};

TEST_F(PersistentTerm, PutGetEraseAcrossProcesses) {
  auto pt = persistent_term::open(node());
  ASSERT_TRUE(pt);
  EXPECT_EQ(pt->get("pool.size"), std::nullopt);
  std::uint64_t g0 = pt->generation();
  ASSERT_TRUE(pt->put("pool.size", "4"));
  ASSERT_TRUE(pt->put("pool.members", "w1,w2,w3,w4"));
  EXPECT_GT(pt->generation(), g0);
  EXPECT_EQ(pt->get("pool.size"), "4");
  core::spawn_options o;
  auto c = core::spawn_function(o, [&] {
    auto other = persistent_term::open(node());
    if (!other || other->get("pool.members") != "w1,w2,w3,w4") {
      return 1;
    }
    return other->put("pool.size", "5") ? 0 : 2;
  });
  ASSERT_TRUE(c);
  auto e = core::reap(c->pidfd.get());
  EXPECT_EQ(e.code, CLD_EXITED);
  EXPECT_EQ(e.status, 0);
  EXPECT_EQ(pt->get("pool.size"), "5");
  EXPECT_EQ(pt->all().size(), 2u);
  auto er = pt->erase("pool.size");
  ASSERT_TRUE(er);
  EXPECT_TRUE(*er);
  auto er2 = pt->erase("pool.size");
  ASSERT_TRUE(er2);
  EXPECT_FALSE(*er2);
  EXPECT_EQ(pt->get("pool.size"), std::nullopt);
  EXPECT_EQ(pt->put(std::string(100, 'k'), "v").error(), errc::too_large);
  for (std::size_t i = 1; i < persistent_term::max_terms; ++i) {
    ASSERT_TRUE(pt->put("k" + std::to_string(i), "v"));
  }
  EXPECT_EQ(pt->put("one.too.many", "v").error(), errc::table_full);
  EXPECT_EQ(pt->get("pool.members"), "w1,w2,w3,w4");
}

TEST_F(PersistentTerm, WriterKilledMidWayLeavesThePreviousImage) {
  auto pt = persistent_term::open(node());
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->put("fact", "stable"));
  for (int round = 0; round < 30; ++round) {
    core::spawn_options o;
    auto c = core::spawn_function(o, [&] {
      auto w = persistent_term::open(node());
      for (int i = 0;; ++i) {
        (void)w->put("churn", std::string(static_cast<std::size_t>(i % 1000), 'x'));
      }
      return 0;
    });
    ASSERT_TRUE(c);
    // Let it run a moment (until it has published something), then kill it.
    std::uint64_t g = pt->generation();
    ASSERT_TRUE(otpd::testing::wait_until(
        [&] { return pt->generation() >= g + 3 + static_cast<std::uint64_t>(round); }));
    (void)core::kill_and_reap(c->pid, SIGKILL, core::deadline::never(), c->pidfd.get());
    EXPECT_EQ(pt->get("fact"), "stable");
    ASSERT_TRUE(pt->put("fact", "stable"));  // the lock is free again
  }
}

}  // namespace
}  // namespace otpd::shm_table::test

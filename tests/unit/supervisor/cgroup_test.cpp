// The pure decisions of containment (supervisor/src/cgroup.hpp): when otpd
// moves itself into a leaf of its cgroup, and how a child path becomes a
// cgroup directory name.
#include "cgroup.hpp"

#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

namespace otpd::supervisor::detail {
namespace {

TEST(Cgroup, OtpdMovesIntoALeafOnlyWhenAloneInACgroupWithControllersToEnable) {
  pid_t self = 4242;
  // A systemd unit with Delegate=yes on a pure v2 host: otpd alone, the
  // controllers offered, none enabled for the subtree yet.
  EXPECT_TRUE(needs_leaf(false, "cpuset cpu io memory pids\n", "\n", "4242\n", self));
  // One of them still to enable is enough.
  EXPECT_TRUE(needs_leaf(false, "cpu memory pids", "memory pids", "4242", self));
  // Everything wanted is enabled already: nothing to gain by moving.
  EXPECT_FALSE(needs_leaf(false, "cpu memory pids io", "cpu memory pids", "4242", self));
  // A hybrid host's v2 hierarchy offers none of them (here only hugetlb).
  EXPECT_FALSE(needs_leaf(false, "hugetlb\n", "", "4242\n", self));
  // A shell shares the cgroup: otpd does not move out from under it.
  EXPECT_FALSE(needs_leaf(false, "cpu memory pids", "", "4242\n4300\n", self));
  EXPECT_FALSE(needs_leaf(false, "cpu memory pids", "", "4300\n", self));
  // The hierarchy's root may hold processes and enable controllers.
  EXPECT_FALSE(needs_leaf(true, "cpu memory pids", "", "4242", self));
  // A word that only contains a controller's name is not that controller.
  EXPECT_FALSE(needs_leaf(false, "cpuset misc", "", "4242", self));
}

TEST(Cgroup, ChildPathsBecomeSafeDirectoryNames) {
  EXPECT_EQ(cgroup_name_of("pool/w-1"), "w-pool%2Fw-1");
  EXPECT_EQ(cgroup_name_of("../x y"), "w-%2E%2E%2Fx%20y");
  std::string long_path(300, 'a');
  std::string name = cgroup_name_of(long_path);
  EXPECT_LE(name.size(), 255U);
  EXPECT_NE(name, cgroup_name_of(long_path + "b"));
  EXPECT_EQ(std::string(self_leaf).rfind("otpd-", 0), 0U);
}

}  // namespace
}  // namespace otpd::supervisor::detail

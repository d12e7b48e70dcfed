#pragma once

#include <unistd.h>

#include <atomic>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/shm_table/table.hpp>

namespace otpd::shm_table::test {

// A node name of its own per test, so tests never collide with each other
// or with a running node; every segment of it is removed at the end.
class shm_fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> n{0};
    node_ = fmt::format("t{}x{}", ::getpid(), n.fetch_add(1));
  }
  void TearDown() override {
    (void)remove_all(node_);
    EXPECT_TRUE(list_tables(node_).empty());
  }
  [[nodiscard]] const std::string& node() const { return node_; }

 private:
  std::string node_;
};

}  // namespace otpd::shm_table::test

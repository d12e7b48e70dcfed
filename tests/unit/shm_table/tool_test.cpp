#include <string>

#include "shm_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/shm_table/persistent_term.hpp>
#include <otpd/shm_table/table.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::shm_table::test {
namespace {

class OtpTable : public shm_fixture {
 protected:
  // Runs otp-table with the test's node; returns stdout, *status = exit code.
  std::string run(const std::string& args, int* status = nullptr) {
    int st = 0;
    std::string out =
        otpd::testing::sh_output(otpd::testing::shell_quote(otpd::testing::bin_path("otp-table")) +
                                     " --node " + node() + " " + args + " 2>/dev/null",
                                 &st);
    if (status != nullptr) {
      *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    return out;
  }
};

TEST_F(OtpTable, ListInfoGetPutDeleteDump) {
  table_options o;
  o.access = access_mode::public_table;
  auto t = table::create(node(), "users", o);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->insert("alice", "admin"));
  int st = -1;
  std::string list = run("list", &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(list.find("users"), std::string::npos) << list;
  EXPECT_NE(list.find("public"), std::string::npos) << list;
  std::string info = run("info users", &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(info.find("type: set"), std::string::npos) << info;
  EXPECT_NE(info.find("size: 1\n"), std::string::npos) << info;
  EXPECT_NE(info.find(fmt::format("owner: {} (alive)", ::getpid())), std::string::npos) << info;
  EXPECT_EQ(run("get users alice", &st), "admin\n");
  EXPECT_EQ(st, 0);
  run("get users bob", &st);
  EXPECT_EQ(st, 1);
  run("put users bob 'we\\x01b'", &st);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(t->lookup("bob"), "we\\x01b");
  run("put users carol temp --ttl-ms 60000", &st);
  EXPECT_EQ(st, 0);
  std::string dump = run("dump users", &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(dump.find("alice\tadmin\t-\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("carol\ttemp\t"), std::string::npos) << dump;
  run("delete users alice", &st);
  EXPECT_EQ(st, 0);
  run("delete users alice", &st);
  EXPECT_EQ(st, 1);
  EXPECT_FALSE(t->member("alice"));
  EXPECT_EQ(run("verify users", &st), "users: ok\n");
  run("info nosuch", &st);
  EXPECT_EQ(st, 1);
  run("frobnicate", &st);
  EXPECT_EQ(st, 100);
}

TEST_F(OtpTable, PrintsThePersistentTerms) {
  auto pt = persistent_term::open(node());
  ASSERT_TRUE(pt);
  ASSERT_TRUE(pt->put("redis_pool.size", "4"));
  int st = -1;
  EXPECT_EQ(run("terms", &st), "redis_pool.size\t4\n");
  EXPECT_EQ(st, 0);
}

TEST_F(OtpTable, CreateAndRemove) {
  int st = -1;
  run("create ord --type ordered_set --access public", &st);
  EXPECT_EQ(st, 0);
  auto t = table::open(node(), "ord");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->info().type, table_type::ordered_set);
  run("remove ord", &st);
  EXPECT_EQ(st, 0);
  EXPECT_TRUE(list_tables(node()).empty());
}

}  // namespace
}  // namespace otpd::shm_table::test

#include <unistd.h>

#include <gtest/gtest.h>

#include <otpd/observer/procfs.hpp>

namespace otpd::observer {
namespace {

TEST(ProcStat, ParsesTimesAfterACommandWithSpacesAndParens) {
  // Fields 14, 15 (utime, stime) and 22 (starttime); the name is "a) (b".
  std::string line =
      "4242 (a) (b) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 1 0 98765 1000 50 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto s = parse_stat(line);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->cpu_ticks, 42u);
  EXPECT_EQ(s->start_ticks, 98765u);
}

TEST(ProcStat, RefusesWhatIsNotAStatLine) {
  EXPECT_FALSE(parse_stat(""));
  EXPECT_FALSE(parse_stat("no parens here"));
  EXPECT_FALSE(parse_stat("1 (x) S 1 2"));  // cut short
  EXPECT_FALSE(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 utime 5 0 0 20 0 1 0 9 1 1"));
}

TEST(ProcStatm, ResidentIsTheSecondField) {
  EXPECT_EQ(parse_statm_resident("2000 345 100 10 0 200 0\n"), 345u);
  EXPECT_FALSE(parse_statm_resident("2000"));
  EXPECT_FALSE(parse_statm_resident(""));
}

TEST(ProcRead, ReadsThisProcessAndNothingForAMissingPid) {
  auto s = read_proc(::getpid());
  ASSERT_TRUE(s);
  EXPECT_GT(s->rss_pages, 0u);
  EXPECT_GT(s->start_ticks, 0u);
  EXPECT_FALSE(read_proc(-1));
  EXPECT_FALSE(read_proc(0));
  auto fds = count_fds(::getpid());
  ASSERT_TRUE(fds);
  EXPECT_GE(*fds, 3u);
}

}  // namespace
}  // namespace otpd::observer

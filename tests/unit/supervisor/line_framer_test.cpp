// The line framer of captured output: whole lines out, a partial line only
// once it is due (an injected clock) or at EOF, long lines cut at the bound,
// each line stamped with the wall time of its first byte. Then the file
// sink's side: a record of lines is never split across a rotation.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "output_capture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/log.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::supervisor {
namespace {

struct collected {
  std::vector<std::pair<std::string, std::int64_t>> lines;
  auto emit() {
    return [this](std::string_view l, std::int64_t wall) { lines.emplace_back(l, wall); };
  }
};

TEST(LineFramer, EmitsWholeLinesAndKeepsThePartialOne) {
  line_framer f;
  collected out;
  f.feed("one\ntwo\nthr", 11, 0, 1000, out.emit());
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.lines[0].first, "one");
  EXPECT_EQ(out.lines[1].first, "two");
  EXPECT_TRUE(f.pending());
  f.feed("ee\n", 3, 10, 1010, out.emit());
  ASSERT_EQ(out.lines.size(), 3u);
  EXPECT_EQ(out.lines[2].first, "three");
  // Stamped with the time its first byte came, not its last.
  EXPECT_EQ(out.lines[2].second, 1000);
  EXPECT_FALSE(f.pending());
}

TEST(LineFramer, FlushesAPartialLineOnlyOnceItIsDue) {
  line_framer f(64 * 1024, 100);
  collected out;
  f.feed("prompt> ", 8, 500, 7000, out.emit());
  EXPECT_EQ(f.due_at(), 600);
  EXPECT_FALSE(f.flush_due(599, out.emit()));
  EXPECT_TRUE(out.lines.empty());
  // More bytes do not push the deadline: it counts from the first byte.
  f.feed("more", 4, 550, 7050, out.emit());
  EXPECT_EQ(f.due_at(), 600);
  EXPECT_TRUE(f.flush_due(600, out.emit()));
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0].first, "prompt> more");
  EXPECT_EQ(out.lines[0].second, 7000);
  EXPECT_FALSE(f.pending());
  EXPECT_FALSE(f.flush_due(10000, out.emit()));
  // The rest of it starts a line of its own, with its own time.
  f.feed("rest\n", 5, 700, 7200, out.emit());
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.lines[1], std::make_pair(std::string("rest"), std::int64_t{7200}));
}

TEST(LineFramer, CutsALineLongerThanTheBound) {
  line_framer f(4, 100);
  collected out;
  std::string in = "abcdefghij\nxy";
  f.feed(in.data(), in.size(), 0, 0, out.emit());
  ASSERT_EQ(out.lines.size(), 3u);
  EXPECT_EQ(out.lines[0].first, "abcd");
  EXPECT_EQ(out.lines[1].first, "efgh");
  EXPECT_EQ(out.lines[2].first, "ij");
  // A partial line that reaches the bound across feeds is cut too, once a
  // byte past the bound that is not its newline comes.
  f.feed("zw", 2, 0, 0, out.emit());
  EXPECT_EQ(out.lines.size(), 3u);
  EXPECT_TRUE(f.pending());
  f.feed("1", 1, 0, 0, out.emit());
  ASSERT_EQ(out.lines.size(), 4u);
  EXPECT_EQ(out.lines[3].first, "xyzw");
  // A newline right at the bound ends that line, no empty line after it.
  f.feed("234\n5", 5, 0, 0, out.emit());
  ASSERT_EQ(out.lines.size(), 5u);
  EXPECT_EQ(out.lines[4].first, "1234");
  f.feed("678", 3, 0, 0, out.emit());
  f.feed("\n", 1, 0, 0, out.emit());
  ASSERT_EQ(out.lines.size(), 6u);
  EXPECT_EQ(out.lines[5].first, "5678");
  f.feed("9", 1, 0, 0, out.emit());
  f.flush(out.emit());
  ASSERT_EQ(out.lines.size(), 7u);
  EXPECT_EQ(out.lines[6].first, "9");
  EXPECT_FALSE(f.pending());
}

TEST(LineFramer, KeepsBytesThatAreNotUtf8AndEmptyLines) {
  line_framer f;
  collected out;
  std::string in("\xff\xfe bad \xc3\n\n", 10);
  f.feed(in.data(), in.size(), 0, 0, out.emit());
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.lines[0].first, std::string("\xff\xfe bad \xc3", 8));
  EXPECT_EQ(out.lines[1].first, "");
}

TEST(Rfc3339, FormatsUtcWithMilliseconds) {
  EXPECT_EQ(core::rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(core::rfc3339_utc(1796205662345), "2026-12-02T10:01:02.345Z");
  EXPECT_EQ(core::rfc3339_utc(-1), "1969-12-31T23:59:59.999Z");
}

// Lines written as records: the file rotates between two lines, never in
// one, however the record straddles the size limit.
TEST(LogSink, RotatesOnlyBetweenLines) {
  testing::temp_dir d;
  log_sink s;
  s.spec.kind = output_kind::file;
  s.spec.path = d.path() + "/app.log";
  s.spec.max_bytes = 20;
  s.spec.keep = 3;
  ASSERT_TRUE(s.open());
  std::string a = "aaaaaaaaaaaaaa\n";  // 15 bytes
  std::string bc = "bbbbbbb\ncccccccccccccccc\n";
  s.write(a.data(), a.size());
  s.write(bc.data(), bc.size());  // b does not fit after a: rotates, then again before c
  std::string big(50, 'x');
  big += '\n';
  s.write(big.data(), big.size());  // longer than max_bytes: whole, alone
  EXPECT_EQ(testing::read_file(s.spec.path), big);
  EXPECT_EQ(testing::read_file(s.spec.path + ".1"), "cccccccccccccccc\n");
  EXPECT_EQ(testing::read_file(s.spec.path + ".2"), "bbbbbbb\n");
  EXPECT_EQ(testing::read_file(s.spec.path + ".3"), a);
}

}  // namespace
}  // namespace otpd::supervisor

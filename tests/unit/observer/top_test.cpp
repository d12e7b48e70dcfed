// otpctl top's drawing and keys, without a terminal.
#include <gtest/gtest.h>

#include <otpd/observer/top.hpp>

namespace otpd::observer {
namespace {

snapshot demo() {
  std::int64_t now = 1000;
  model m([&] { return now; }, [] { return std::int64_t{1700000000000}; });
  m.apply_status(json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"web","path":"web","pid":null,"state":"running","restarts":0,"type":"supervisor",
       "restart":"permanent","strategy":"one_for_all","children":[
        {"id":"api","path":"web/api","pid":4123,"state":"running","restarts":2,
         "type":"worker","restart":"permanent","uptime_ms":15000,"last_exit":"killed"}]},
      {"id":"db","path":"db","pid":4200,"state":"running","restarts":7,"type":"worker",
       "restart":"permanent","uptime_ms":500},
      {"id":"evil\u001b[2J","path":"evil\u001b[2J","pid":null,"state":"stopped","restarts":0,
       "type":"worker","restart":"permanent","last_exit":"exit 1\u001b]0;x\u0007"}]})"));
  return m.snap();
}

std::string strip_ansi(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b') {
      while (i < s.size() && !(s[i] >= 'A' && s[i] <= 'z' && s[i] != '[')) {
        ++i;
      }
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

TEST(TopScreen, FitsEightyByTwentyFour) {
  snapshot s = demo();
  view_state v;
  auto lines = render_screen(s, v, 80, 24);
  ASSERT_EQ(lines.size(), 24u);
  for (const auto& l : lines) {
    EXPECT_LE(strip_ansi(l).size(), 80u) << l;
  }
  std::string all;
  for (const auto& l : lines) {
    all += strip_ansi(l) + "\n";
  }
  EXPECT_NE(all.find("node demo"), std::string::npos) << all;
  EXPECT_NE(all.find("  api"), std::string::npos) << all;
  EXPECT_NE(all.find("4123"), std::string::npos) << all;
  EXPECT_NE(all.find("web/"), std::string::npos) << all;
  EXPECT_EQ(v.selected, "web") << "the first row is selected";
}

TEST(TopScreen, ChildTextCannotReachTheTerminal) {
  snapshot s = demo();
  view_state v;
  v.sort = sort_key::path;
  for (const auto& l : render_screen(s, v, 120, 24)) {
    // Only our own SGR sequences: ESC [ digits m.
    for (std::size_t i = l.find('\x1b'); i != std::string::npos; i = l.find('\x1b', i + 1)) {
      std::size_t m = l.find('m', i);
      ASSERT_NE(m, std::string::npos);
      for (std::size_t j = i + 2; j < m; ++j) {
        EXPECT_TRUE(isdigit(static_cast<unsigned char>(l[j]))) << l;
      }
    }
    EXPECT_EQ(l.find('\x07'), std::string::npos);
  }
  EXPECT_EQ(terminal_safe("a\x1b[2Jb\xc3\xa9"), "a?[2Jb??");
}

TEST(TopScreen, SelectionScrollsIntoView) {
  snapshot s = demo();
  view_state v;
  v.selected = "evil\x1b[2J";
  auto lines = render_screen(s, v, 80, 6);  // two rows visible
  EXPECT_EQ(v.scroll, 2);
}

TEST(TopKeys, DecodesArrowsPagesAndLetters) {
  std::size_t used = 0;
  EXPECT_EQ(decode_key("\x1b[A", &used), key::up);
  EXPECT_EQ(used, 3u);
  EXPECT_EQ(decode_key("\x1b[Bx", &used), key::down);
  EXPECT_EQ(used, 3u);
  EXPECT_EQ(decode_key("\x1b[6~", &used), key::page_down);
  EXPECT_EQ(used, 4u);
  EXPECT_EQ(decode_key("\x1b[", &used), key::none);
  EXPECT_EQ(used, 0u) << "incomplete: wait for more";
  EXPECT_EQ(decode_key("k", &used), key::kill);
  EXPECT_EQ(decode_key("q", &used), key::quit);
  EXPECT_EQ(decode_key("P", &used), key::sort_cpu);
}

TEST(TopKeys, AnActionNeedsAConfirmation) {
  snapshot s = demo();
  view_state v;
  (void)render_screen(s, v, 80, 24);
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_EQ(v.selected, "web/api");
  EXPECT_FALSE(handle_key(v, key::kill, s, 20));
  ASSERT_TRUE(v.prompt);
  EXPECT_EQ(v.prompt->verb, "kill");
  EXPECT_EQ(v.prompt->pid, 4123);
  auto act = handle_key(v, key::yes, s, 20);
  ASSERT_TRUE(act);
  EXPECT_EQ(act->path, "web/api");
  EXPECT_FALSE(v.prompt);
  // Any other key cancels.
  EXPECT_FALSE(handle_key(v, key::restart, s, 20));
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_FALSE(v.prompt);
  EXPECT_EQ(v.message, "cancelled");
  EXPECT_EQ(v.selected, "web/api") << "the cancelling key does not move";
}

TEST(TopSort, ByRestartsThenTreeOrder) {
  snapshot s = demo();
  auto rows = order_rows(s, sort_key::restarts);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0]->path, "db");
  EXPECT_EQ(rows[1]->path, "web/api");
  EXPECT_EQ(rows[2]->path, "web");
}

TEST(TopPlain, TableAndEventLines) {
  auto lines = plain_table(demo());
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_NE(lines[1].find("PATH"), std::string::npos);
  EXPECT_NE(lines[3].find("web/api"), std::string::npos);
  EXPECT_NE(lines[3].find("4123"), std::string::npos);
  std::string e =
      plain_event({{"event", "exited"}, {"path", "web/api"}, {"pid", 4123}, {"reason", "killed"}},
                  1700000000123);
  EXPECT_EQ(e, "2023-11-14T22:13:20.123Z exited web/api pid=4123 reason=\"killed\"");
}

}  // namespace
}  // namespace otpd::observer

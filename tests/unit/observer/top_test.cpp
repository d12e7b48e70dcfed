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

// alpha, then `pool` with instances: 3 (pool-1 restarted 5 times, pool-2
// in backoff), then beta.
snapshot with_instances() {
  std::int64_t now = 1000;
  model m([&] { return now; }, [] { return std::int64_t{1700000000000}; });
  m.apply_status(json::parse(R"({"ok":true,"node":"demo","otpd_pid":4100,"runtime_dir":"/rt",
    "id":"root","path":"/","pid":null,"state":"running","restarts":0,"type":"supervisor",
    "restart":"permanent","strategy":"one_for_one","children":[
      {"id":"alpha","path":"alpha","pid":4000,"state":"running","restarts":1,"type":"worker",
       "restart":"permanent","uptime_ms":500},
      {"id":"pool-0","path":"pool-0","pid":5000,"state":"running","restarts":0,"type":"worker",
       "restart":"permanent","uptime_ms":4000,"instance_of":"pool","instance":0,
       "memory_current":1048576},
      {"id":"pool-1","path":"pool-1","pid":5001,"state":"running","restarts":5,"type":"worker",
       "restart":"permanent","uptime_ms":3000,"instance_of":"pool","instance":1,
       "memory_current":2097152},
      {"id":"pool-2","path":"pool-2","pid":null,"state":"backoff","restarts":0,"type":"worker",
       "restart":"permanent","instance_of":"pool","instance":2},
      {"id":"beta","path":"beta","pid":4001,"state":"running","restarts":3,"type":"worker",
       "restart":"permanent","uptime_ms":500}]})"));
  return m.snap();
}

std::string screen_text(const std::vector<std::string>& lines) {
  std::string all;
  for (const auto& l : lines) {
    all += strip_ansi(l) + "\n";
  }
  return all;
}

std::vector<std::string> keys_of(const std::vector<display_row>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) {
    out.push_back(r.key());
  }
  return out;
}

TEST(TopGroups, AGroupRowWithItsSumsAndItsInstancesUnderItInEightyByTwentyFour) {
  snapshot s = with_instances();
  view_state v;
  auto lines = render_screen(s, v, 80, 24);
  ASSERT_EQ(lines.size(), 24u);
  for (const auto& l : lines) {
    EXPECT_LE(strip_ansi(l).size(), 80u) << l;
  }
  std::string all = screen_text(lines);
  // Title, figures, header, then: alpha, the group, its three instances, beta.
  EXPECT_EQ(strip_ansi(lines[3]).rfind("alpha ", 0), 0u) << all;
  std::string group = strip_ansi(lines[4]);
  EXPECT_EQ(group.rfind("pool x3 [-] ", 0), 0u) << all;
  EXPECT_NE(group.find("backoff"), std::string::npos) << group;  // the worst state
  EXPECT_NE(group.find(" 2/3 "), std::string::npos) << group;    // running / total
  EXPECT_NE(group.find("    5 "), std::string::npos) << group;   // restarts summed
  EXPECT_NE(group.find("3.0M"), std::string::npos) << group;     // memory summed
  EXPECT_NE(group.find("1 backoff"), std::string::npos) << group;
  EXPECT_EQ(strip_ansi(lines[5]).rfind("  pool-0 ", 0), 0u) << all;
  EXPECT_NE(lines[5].find("5000"), std::string::npos) << all;
  EXPECT_EQ(strip_ansi(lines[6]).rfind("  pool-1 ", 0), 0u) << all;
  EXPECT_EQ(strip_ansi(lines[7]).rfind("  pool-2 ", 0), 0u) << all;
  EXPECT_EQ(strip_ansi(lines[8]).rfind("beta ", 0), 0u) << all;
  EXPECT_NE(all.find("5 children, 4 running"), std::string::npos) << all;
  EXPECT_NE(all.find("space fold"), std::string::npos) << all;
}

TEST(TopGroups, SpaceFoldsTheGroupAndAnInstanceFoldsItsGroup) {
  snapshot s = with_instances();
  view_state v;
  (void)render_screen(s, v, 80, 24);
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_EQ(v.selected, "pool-*");
  std::size_t used = 0;
  ASSERT_EQ(decode_key(" ", &used), key::toggle_group);
  ASSERT_EQ(decode_key("\r", &used), key::toggle_group);
  EXPECT_FALSE(handle_key(v, key::toggle_group, s, 20));
  EXPECT_EQ(keys_of(display_rows(s, v.sort, v.collapsed)),
            (std::vector<std::string>{"alpha", "pool-*", "beta"}));
  std::string all = screen_text(render_screen(s, v, 80, 24));
  EXPECT_NE(all.find("pool x3 [+]"), std::string::npos) << all;
  EXPECT_EQ(all.find("pool-0"), std::string::npos) << all;
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_EQ(v.selected, "beta") << "the folded instances are skipped";
  // Unfold, go to an instance, fold from there: the group is selected.
  EXPECT_FALSE(handle_key(v, key::up, s, 20));
  EXPECT_FALSE(handle_key(v, key::toggle_group, s, 20));
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_EQ(v.selected, "pool-1");
  EXPECT_FALSE(handle_key(v, key::toggle_group, s, 20));
  EXPECT_EQ(v.selected, "pool-*");
  EXPECT_EQ(v.collapsed.count("pool-*"), 1u);
  // Space on a plain child does nothing.
  EXPECT_FALSE(handle_key(v, key::home, s, 20));
  EXPECT_FALSE(handle_key(v, key::toggle_group, s, 20));
  EXPECT_EQ(v.selected, "alpha");
  EXPECT_EQ(v.collapsed.size(), 1u);
}

TEST(TopGroups, SortingKeepsInstancesUnderTheirGroup) {
  snapshot s = with_instances();
  // Restarts: the group's sum (5) beats beta (3) and alpha (1); its
  // instances follow it, sorted by the same key.
  EXPECT_EQ(keys_of(display_rows(s, sort_key::restarts, {})),
            (std::vector<std::string>{"pool-*", "pool-1", "pool-0", "pool-2", "beta", "alpha"}));
  // Memory: the group's sum first, then the instances by their own.
  EXPECT_EQ(keys_of(display_rows(s, sort_key::memory, {})),
            (std::vector<std::string>{"pool-*", "pool-1", "pool-0", "pool-2", "alpha", "beta"}));
  auto by_path = display_rows(s, sort_key::path, {});
  EXPECT_EQ(keys_of(by_path),
            (std::vector<std::string>{"alpha", "beta", "pool-*", "pool-0", "pool-1", "pool-2"}));
  EXPECT_TRUE(by_path[3].instance);
  EXPECT_FALSE(by_path[2].instance);
  EXPECT_EQ(by_path[2].group->total, 3);
}

TEST(TopGroups, AnActionOnAGroupGoesToEveryInstanceAfterOneConfirmation) {
  snapshot s = with_instances();
  view_state v;
  (void)render_screen(s, v, 80, 24);
  EXPECT_FALSE(handle_key(v, key::down, s, 20));
  EXPECT_FALSE(handle_key(v, key::restart, s, 20));
  ASSERT_TRUE(v.prompt);
  EXPECT_EQ(v.prompt->path, "pool-*");
  EXPECT_EQ(v.prompt->paths, (std::vector<std::string>{"pool-0", "pool-1", "pool-2"}));
  std::string all = screen_text(render_screen(s, v, 80, 24));
  EXPECT_NE(all.find("restart pool-* (each of its 3 instances)? y to confirm"), std::string::npos)
      << all;
  auto act = handle_key(v, key::yes, s, 20);
  ASSERT_TRUE(act);
  EXPECT_EQ(act->verb, "restart");
  EXPECT_EQ(act->paths.size(), 3u);
}

TEST(TopGroups, PlainTableHasTheGroupLineThenItsInstances) {
  auto lines = plain_table(with_instances());
  ASSERT_EQ(lines.size(), 2u + 6u);
  EXPECT_EQ(lines[2].rfind("alpha ", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("pool-* x3 ", 0), 0u) << lines[3];
  EXPECT_NE(lines[3].find(" 2/3 "), std::string::npos) << lines[3];
  EXPECT_EQ(lines[4].rfind("  pool-0 ", 0), 0u) << lines[4];
  EXPECT_NE(lines[4].find(" 5000 "), std::string::npos) << lines[4];
  EXPECT_EQ(lines[7].rfind("beta ", 0), 0u) << lines[7];
  for (const auto& l : lines) {
    EXPECT_EQ(l.find('\x1b'), std::string::npos) << l;
  }
}

}  // namespace
}  // namespace otpd::observer

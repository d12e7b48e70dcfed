// The children of an `instances: N` worker seen as one group, against a
// live otpd: `otpctl tree` (a group line, its instances under it),
// `otpctl top` in tmux (the group row, a kill -9 of one instance, folding,
// an action on the whole group); and a liveness probe's failures in a row
// in status, rising before otpd restarts the worker.
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;
using testing::shell_quote;

// One tmux server of our own (its socket in a temp dir) running a command
// in an 80x24 window, killed with everything in it at the end.
class tmux_window {
 public:
  explicit tmux_window(const std::string& command) : sock_(dir_.path() + "/tmux.sock") {
    started_ = testing::sh(fmt::format("TERM=xterm-256color tmux -S {} -f /dev/null new-session -d "
                                       "-s top -x 80 -y 24 {}",
                                       shell_quote(sock_), shell_quote(command))) == 0;
  }
  ~tmux_window() {
    (void)testing::sh(fmt::format("tmux -S {} kill-server >/dev/null 2>&1", shell_quote(sock_)));
  }
  tmux_window(const tmux_window&) = delete;
  tmux_window& operator=(const tmux_window&) = delete;
  tmux_window(tmux_window&&) = delete;
  tmux_window& operator=(tmux_window&&) = delete;

  [[nodiscard]] bool started() const { return started_; }
  [[nodiscard]] std::string capture() const {
    return testing::sh_output(
        fmt::format("tmux -S {} capture-pane -p -t top 2>&1", shell_quote(sock_)));
  }
  void keys(const std::string& k) const {
    ASSERT_EQ(testing::sh(fmt::format("tmux -S {} send-keys -t top {}", shell_quote(sock_), k)), 0);
  }
  bool wait_screen(const std::function<bool(const std::string&)>& pred, std::string* last,
                   std::chrono::milliseconds timeout = 15000ms) const {
    return testing::wait_until(
        [&] {
          *last = capture();
          return pred(*last);
        },
        timeout);
  }

 private:
  testing::temp_dir dir_{"otpd-tmux"};
  std::string sock_;
  bool started_ = false;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    out.push_back(line);
  }
  return out;
}

// The index of the first line that starts with prefix, or -1.
int index_of(const std::vector<std::string>& lines, const std::string& prefix) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind(prefix, 0) == 0) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

// The group's line then its three instances, each with its pid, in a row.
bool shows_group(const std::string& screen, const std::string& group_line, const pid_t (&pids)[3]) {
  auto lines = lines_of(screen);
  int g = index_of(lines, group_line);
  if (g < 0 || g + 3 >= static_cast<int>(lines.size())) {
    return false;
  }
  for (int k = 0; k < 3; ++k) {
    const std::string& l = lines[static_cast<std::size_t>(g + 1 + k)];
    if (l.rfind(fmt::format("  pool-{} ", k), 0) != 0 ||
        l.find(fmt::format(" {} ", pids[k])) == std::string::npos) {
      return false;
    }
  }
  return true;
}

// alpha, `pool` with three instances, beta.
std::string pool_yaml() {
  return root_yaml("one_for_one",
                   sleeper("alpha") + sleeper("pool", ", instances: 3") + sleeper("beta"), 100, 60);
}

void start_pool(otpd_node& node, pid_t (&pids)[3]) {
  node.start(pool_yaml());
  for (int k = 0; k < 3; ++k) {
    pids[k] = node.wait_running(fmt::format("pool-{}", k));
    ASSERT_GT(pids[k], 0) << node.log();
  }
  ASSERT_GT(node.wait_running("alpha"), 0) << node.log();
  ASSERT_GT(node.wait_running("beta"), 0) << node.log();
}

TEST(InstancesTree, AGroupLineWithItsInstancesUnderIt) {
  otpd_node node;
  pid_t pids[3] = {};
  ASSERT_NO_FATAL_FAILURE(start_pool(node, pids));
  std::string out;
  ASSERT_EQ(node.ctl("tree", &out), 0) << out;
  auto lines = lines_of(out);
  // The node's line, the header, alpha, the group, its 3 instances, beta.
  ASSERT_EQ(lines.size(), 8u) << out;
  EXPECT_EQ(lines[2].rfind("alpha ", 0), 0u) << out;
  EXPECT_TRUE(std::regex_match(lines[3], std::regex("pool \xc3\x97"
                                                    "3 +running +3/3 +0 +- +-")))
      << out;
  // "×" is one column: the state starts where the other rows' does.
  EXPECT_EQ(lines[3].find("running") - 1, lines[2].find("running")) << out;
  for (int k = 0; k < 3; ++k) {
    EXPECT_TRUE(
        std::regex_search(lines[static_cast<std::size_t>(4 + k)],
                          std::regex(fmt::format("^  pool-{} +running +{} +0 ", k, pids[k]))))
        << out;
  }
  EXPECT_EQ(lines[7].rfind("beta ", 0), 0u) << out;

  // status stays one flat line per child, instances included.
  ASSERT_EQ(node.ctl("status", &out), 0) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(fmt::format("\npool-1 +running +{} ", pids[1]))))
      << out;
  EXPECT_EQ(out.find("\xc3\x97"), std::string::npos) << out;
  // --json tree: the daemon's answer as it was (instances are children).
  ASSERT_EQ(node.ctl("--json tree", &out), 0) << out;
  json j = json::parse(out);
  json p2 = otpd_node::find(j, "pool-2");
  EXPECT_EQ(p2.value("instance_of", ""), "pool") << out;
  EXPECT_EQ(p2.value("instance", -1), 2) << out;
  EXPECT_FALSE(j.contains("groups")) << out;

  // kill -9 of one instance: the group counts its restart, its new pid under it.
  shell_kill(pids[1]);
  pid_t fresh = node.wait_running("pool-1", pids[1]);
  ASSERT_GT(fresh, 0) << node.log();
  ASSERT_TRUE(testing::wait_until([&] {
    node.ctl("tree", &out);
    return std::regex_search(out, std::regex("\npool \xc3\x97"
                                             "3 +running +3/3 +1 ")) &&
           std::regex_search(out, std::regex(fmt::format("\n  pool-1 +running +{} +1 ", fresh)));
  })) << out;
}

TEST(InstancesTop, TheGroupRowFollowsAKillFoldsAndActsOnEveryInstanceInTmux) {
  ASSERT_FALSE(testing::find_program("tmux").empty()) << "tmux is required (scripts/setup.sh test)";
  otpd_node node;
  pid_t pids[3] = {};
  ASSERT_NO_FATAL_FAILURE(start_pool(node, pids));
  tmux_window w(fmt::format("{} --runtime-dir {} top", shell_quote(testing::bin_path("otpctl")),
                            shell_quote(node.rt())));
  ASSERT_TRUE(w.started());
  std::string screen;
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) {
        auto lines = lines_of(s);
        int g = index_of(lines, "pool x3 [-] ");
        return shows_group(s, "pool x3 [-] ", pids) &&
               lines[static_cast<std::size_t>(g)].find(" 3/3 ") != std::string::npos &&
               index_of(lines, "alpha ") == g - 1 && index_of(lines, "beta ") == g + 4;
      },
      &screen))
      << screen;

  // kill -9 of pool-1 from a shell: its new pid shows under the group.
  shell_kill(pids[1]);
  pid_t fresh = node.wait_running("pool-1", pids[1]);
  ASSERT_GT(fresh, 0) << node.log();
  pid_t now[3] = {pids[0], fresh, pids[2]};
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) { return shows_group(s, "pool x3 [-] ", now); }, &screen))
      << screen;
  {
    auto lines = lines_of(screen);
    int at = index_of(lines, "  pool-1 ");
    ASSERT_GE(at, 0) << screen;
    EXPECT_NE(lines[static_cast<std::size_t>(at)].find("killed"), std::string::npos) << screen;
  }

  // ↓ selects the group; space folds it, space again unfolds it.
  w.keys("Down");
  w.keys("Space");
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) {
        return s.find("pool x3 [+]") != std::string::npos && s.find("pool-0") == std::string::npos;
      },
      &screen))
      << screen;
  w.keys("Space");
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) { return shows_group(s, "pool x3 [-] ", now); }, &screen))
      << screen;

  // k on the group: one confirmation, then every instance is killed (and restarted).
  w.keys("k");
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) {
        return s.find("kill pool-* (each of its 3 instances)?") != std::string::npos;
      },
      &screen))
      << screen;
  w.keys("y");
  pid_t again[3] = {};
  for (int k = 0; k < 3; ++k) {
    again[k] = node.wait_running(fmt::format("pool-{}", k), now[k]);
    ASSERT_GT(again[k], 0) << node.log();
  }
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) {
        return shows_group(s, "pool x3 [-] ", again) &&
               s.find("kill pool-*: done (3 instances)") != std::string::npos;
      },
      &screen))
      << screen;
  EXPECT_GT(node.pid_of("alpha"), 0);
  w.keys("q");
}

TEST(LivenessStatus, FailuresInARowRiseBeforeTheRestart) {
  otpd_node node;
  // The probe fails while the file "sick" exists: the worker starts
  // healthy (a count of 0), then each probe adds one until the 4th ends it.
  // An interval long enough for several status polls at each count.
  testing::temp_dir d("otpd-live");
  auto interval = testing::scaled(500ms).count();
  node.start(root_yaml("one_for_one",
                       sleeper("sick", fmt::format(", liveness: {{command: 'test ! -e {}/sick', "
                                                   "interval: {}, failures: 4}}",
                                                   d.path(), interval)) +
                           sleeper("plain"),
                       100, 60));
  pid_t pid = node.wait_running("sick");
  ASSERT_GT(pid, 0) << node.log();
  json c;
  ASSERT_TRUE(testing::wait_until([&] {
    c = otpd_node::find(node.status(), "sick");
    return c.value("liveness_failures", -1) == 0;
  })) << c.dump();
  EXPECT_EQ(c.value("liveness_threshold", -1), 4) << c.dump();
  // A worker without a probe has no count.
  EXPECT_FALSE(otpd_node::find(node.status(), "plain").contains("liveness_failures"));

  std::ofstream(d.path() + "/sick") << "sick\n";
  std::vector<int> seen;  // the counts of the first process, in the order seen
  json last;
  bool restarted = testing::wait_until(
      [&] {
        json n = otpd_node::find(node.status(), "sick");
        if (n.is_null() || n["pid"].is_null()) {
          return false;
        }
        if (n["pid"].get<pid_t>() != pid) {
          last = n;
          return true;
        }
        int k = n.value("liveness_failures", 0);
        if (k > 0 && (seen.empty() || seen.back() != k)) {
          seen.push_back(k);
        }
        return false;
      },
      30000ms);
  ASSERT_TRUE(restarted) << node.log();
  std::string counts;
  for (int k : seen) {
    counts += std::to_string(k) + " ";
  }
  EXPECT_GE(seen.size(), 2u) << "the count rose before the restart: " << counts;
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << counts;
  EXPECT_LE(seen.empty() ? 0 : seen.back(), 4) << counts;
  EXPECT_EQ(last.value("last_exit", ""), "liveness_failed") << last.dump();

  // otpctl status says so while the new process fails again.
  std::string out;
  EXPECT_TRUE(testing::wait_until([&] {
    node.ctl("status", &out);
    return std::regex_search(out, std::regex("\nsick [^\n]*liveness [1-3]/4 failed"));
  })) << out;
  EXPECT_FALSE(std::regex_search(out, std::regex("\nplain [^\n]*liveness"))) << out;
}

}  // namespace
}  // namespace otpd::itest

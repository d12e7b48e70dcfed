// The observer against a live otpd: `otpctl top` driven in tmux (keys in,
// screen out), its plain mode, and otpd-web as one of the node's workers:
// the token, the CSRF check, event streams that do not starve /metrics,
// and /metrics read by a real Prometheus parser (python3-prometheus-client).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

using namespace std::chrono_literals;
using testing::shell_quote;

// ---- tmux ------------------------------------------------------------------------

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
  // Polls the screen until pred holds; *last is the last screen seen.
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

// The screen line that shows id (tree view: the id starts the line).
std::string line_of(const std::string& screen, const std::string& id) {
  std::istringstream in(screen);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(id + " ", 0) == 0) {
      return line;
    }
  }
  return {};
}

bool shows_pid(const std::string& screen, const std::string& id, pid_t pid) {
  std::string l = line_of(screen, id);
  return l.find(" " + std::to_string(pid) + " ") != std::string::npos;
}

TEST(ObserverTop, FollowsKillsAndKillsTheSelectedChildInTmux) {
  ASSERT_FALSE(testing::find_program("tmux").empty()) << "tmux is required (scripts/setup.sh test)";
  otpd_node node;
  node.start(root_yaml("one_for_one", sleeper("alpha") + sleeper("beta")));
  pid_t alpha = node.wait_running("alpha");
  pid_t beta = node.wait_running("beta");
  ASSERT_GT(alpha, 0);
  ASSERT_GT(beta, 0);

  tmux_window w(fmt::format("{} --runtime-dir {} top", shell_quote(testing::bin_path("otpctl")),
                            shell_quote(node.rt())));
  ASSERT_TRUE(w.started());
  std::string screen;
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) {
        return shows_pid(s, "alpha", alpha) && shows_pid(s, "beta", beta) &&
               s.find("node ") != std::string::npos;
      },
      &screen))
      << screen;
  EXPECT_NE(line_of(screen, "alpha").find("running"), std::string::npos) << screen;

  // kill -9 from a shell: the new pid shows without a key press.
  shell_kill(alpha);
  pid_t alpha2 = node.wait_running("alpha", alpha);
  ASSERT_GT(alpha2, 0);
  ASSERT_TRUE(
      w.wait_screen([&](const std::string& s) { return shows_pid(s, "alpha", alpha2); }, &screen))
      << screen;
  EXPECT_NE(line_of(screen, "alpha").find("killed"), std::string::npos) << screen;

  // Select beta (second row), kill it from the keyboard, confirm.
  w.keys("Down");
  w.keys("k");
  ASSERT_TRUE(w.wait_screen(
      [&](const std::string& s) {
        return s.find("kill beta (pid " + std::to_string(beta)) != std::string::npos;
      },
      &screen))
      << screen;
  w.keys("y");
  pid_t beta2 = node.wait_running("beta", beta);
  ASSERT_GT(beta2, 0) << node.log();
  ASSERT_TRUE(
      w.wait_screen([&](const std::string& s) { return shows_pid(s, "beta", beta2); }, &screen))
      << screen;
  EXPECT_NE(screen.find("kill beta: done"), std::string::npos) << screen;
  EXPECT_EQ(node.pid_of("alpha"), alpha2) << "only the selected child was killed";

  // q leaves the alternate screen and ends otpctl (the window closes).
  w.keys("q");
  EXPECT_TRUE(testing::wait_until([&] {
    return w.capture().find("no server") != std::string::npos ||
           w.capture().find("can't find") != std::string::npos;
  })) << w.capture();
}

TEST(ObserverTop, PlainLinesWhenNotATerminal) {
  otpd_node node;
  node.start(root_yaml("one_for_one", sleeper("alpha") + sleeper("beta")));
  pid_t alpha = node.wait_running("alpha");
  ASSERT_GT(alpha, 0);
  std::string out;
  ASSERT_EQ(node.ctl("top", &out), 0) << out;
  EXPECT_NE(out.find("PATH"), std::string::npos) << out;
  std::regex alpha_line("\nalpha +running +" + std::to_string(alpha) + " ");
  EXPECT_TRUE(std::regex_search(out, alpha_line)) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << "no escape sequences in plain mode";

  // --follow: a line per event, as it happens.
  testing::temp_dir d("otpd-topf");
  std::string log = d.path() + "/top.out";
  ASSERT_EQ(
      testing::sh(fmt::format("{} --runtime-dir {} top --follow > {} 2>&1 & echo $! > {}/pid",
                              shell_quote(testing::bin_path("otpctl")), shell_quote(node.rt()),
                              shell_quote(log), shell_quote(d.path()))),
      0);
  pid_t follower = std::stoi(testing::read_file(d.path() + "/pid"));
  ASSERT_TRUE(testing::wait_until(
      [&] { return testing::read_file(log).find("PATH") != std::string::npos; }));
  shell_kill(alpha);
  bool seen = testing::wait_until([&] {
    return testing::read_file(log).find("exited alpha pid=" + std::to_string(alpha) +
                                        " reason=\"killed\"") != std::string::npos;
  });
  ::kill(follower, SIGTERM);
  EXPECT_TRUE(seen) << testing::read_file(log);
  EXPECT_TRUE(testing::wait_until([&] { return !testing::process_alive(follower); }));
}

TEST(ObserverTop, NoOtpdIsASystemError) {
  testing::temp_dir d("otpd-none");
  std::string out;
  int st = 0;
  out = testing::sh_output(
      fmt::format("{} --runtime-dir {} top 2>&1", shell_quote(testing::bin_path("otpctl")),
                  shell_quote(d.path())),
      &st);
  EXPECT_EQ(WEXITSTATUS(st), 111) << out;
  EXPECT_NE(out.find("unable to connect to otpd"), std::string::npos) << out;
}

// ---- otpd-web --------------------------------------------------------------------

struct web_url {
  int port = 0;
  std::string token;
};

// The demo-like tree plus otpd-web as a worker; waits for its URL.
std::string web_tree(const std::string& extra_children = "") {
  return root_yaml(
      "one_for_one",
      sleeper("alpha") + sleeper("beta") +
          "    - id: svc\n      strategy: one_for_all\n      children:\n  " + sleeper("gamma") +
          fmt::format("    - {{id: web, command: [{}, --port, \"0\"], readiness: notify}}\n",
                      testing::bin_path("otpd-web")) +
          extra_children);
}

web_url wait_web(otpd_node& node) {
  web_url u;
  std::string out;
  bool ok = testing::wait_until([&] { return node.ctl("web", &out) == 0; });
  EXPECT_TRUE(ok) << out << node.log();
  std::smatch m;
  std::regex re(R"(^http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64})\n$)");
  if (ok && std::regex_match(out, m, re)) {
    u.port = std::stoi(m[1]);
    u.token = m[2];
  } else {
    ADD_FAILURE() << "otpctl web printed: " << out;
  }
  return u;
}

httplib::Headers bearer(const web_url& u) {
  return {{"Authorization", "Bearer " + u.token}};
}

std::string get_metrics(const web_url& u) {
  httplib::Client c("127.0.0.1", u.port);
  c.set_read_timeout(10, 0);
  auto r = c.Get("/metrics", bearer(u));
  if (!r || r->status != 200) {
    return {};
  }
  return r->body;
}

// The samples of the metrics text as the Prometheus client library parses
// them: "name{label=value,...} value" a line, labels sorted.
std::string parse_with_prometheus_client(const std::string& text, bool* ok) {
  testing::temp_dir d("otpd-prom");
  std::string in = d.path() + "/metrics.txt";
  std::ofstream(in) << text;
  std::string script = d.path() + "/parse.py";
  std::ofstream(script) << R"(import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    print("FAMILY %s %s" % (fam.name, fam.type))
    for s in fam.samples:
        labels = ",".join("%s=%s" % (k, v) for k, v in sorted(s.labels.items()) if k != "node")
        print("%s{%s} %r" % (s.name, labels, float(s.value)))
)";
  int st = 0;
  std::string out = testing::sh_output(
      fmt::format("/usr/bin/python3 {} {} 2>&1", shell_quote(script), shell_quote(in)), &st);
  *ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  return out;
}

double sample_value(const std::string& parsed, const std::string& series) {
  auto pos = parsed.find(series + " ");
  if (pos == std::string::npos) {
    return -1;
  }
  return std::stod(parsed.substr(pos + series.size() + 1));
}

TEST(ObserverWeb, MetricsParseWithAPrometheusParser) {
  otpd_node node;
  node.start(web_tree());
  web_url u = wait_web(node);
  ASSERT_GT(u.port, 0);
  pid_t alpha = node.wait_running("alpha");
  std::string parsed;
  bool ok = false;
  // The first scrape after start may precede the first /proc sample.
  ASSERT_TRUE(testing::wait_until([&] {
    parsed = parse_with_prometheus_client(get_metrics(u), &ok);
    return ok && sample_value(parsed, "otpd_child_memory_bytes{path=alpha}") > 0;
  })) << parsed;
  // (The script leaves the node label out: it is the same on every series.)
  for (const char* path : {"alpha", "beta", "svc/gamma", "web"}) {
    std::string p = std::string("path=") + path;
    EXPECT_EQ(sample_value(parsed, "otpd_child_up{" + p + "}"), 1.0) << path << parsed;
    EXPECT_EQ(sample_value(parsed, "otpd_child_state{" + p + ",state=running}"), 1.0) << parsed;
    EXPECT_EQ(sample_value(parsed, "otpd_child_state{" + p + ",state=stopped}"), 0.0) << parsed;
    EXPECT_GE(sample_value(parsed, "otpd_child_restarts_total{" + p + "}"), 0.0) << parsed;
    EXPECT_GE(sample_value(parsed, "otpd_child_uptime_seconds{" + p + "}"), 0.0) << parsed;
    EXPECT_GE(sample_value(parsed, "otpd_child_cpu_seconds_total{" + p + "}"), 0.0) << parsed;
    EXPECT_GT(sample_value(parsed, "otpd_child_memory_bytes{" + p + "}"), 0.0) << parsed;
  }
  EXPECT_NE(parsed.find("FAMILY otpd_child_restarts counter"), std::string::npos) << parsed;
  EXPECT_NE(parsed.find("FAMILY otpd_child_memory_bytes gauge"), std::string::npos) << parsed;
  EXPECT_GE(sample_value(parsed, "otpd_supervisor_restarts_observed_total{path=svc}"), 0.0)
      << parsed;
  EXPECT_GT(sample_value(parsed, "otpd_resident_memory_bytes{}"), 0.0) << parsed;
  EXPECT_GT(sample_value(parsed, "otpd_open_fds{}"), 0.0) << parsed;
  EXPECT_GT(sample_value(parsed, "otpd_events_total{event=started}"), 0.0) << parsed;

  // A kill shows as an exit by reason and a restart.
  shell_kill(alpha);
  ASSERT_GT(node.wait_running("alpha", alpha), 0);
  EXPECT_TRUE(testing::wait_until([&] {
    parsed = parse_with_prometheus_client(get_metrics(u), &ok);
    return ok && sample_value(parsed, "otpd_child_exits_total{path=alpha,reason=killed}") == 1.0 &&
           sample_value(parsed, "otpd_child_restarts_total{path=alpha}") == 1.0 &&
           sample_value(parsed, "otpd_supervisor_restarts_observed_total{path=/}") == 1.0;
  })) << parsed;
}

TEST(ObserverWeb, EveryRequestNeedsTheTokenAndActionsTheCsrfToken) {
  otpd_node node;
  node.start(web_tree());
  web_url u = wait_web(node);
  ASSERT_GT(u.port, 0);
  struct stat st {};
  ASSERT_EQ(::stat((node.rt() + "/web.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  httplib::Client c("127.0.0.1", u.port);
  for (const char* path : {"/", "/metrics", "/api/tree", "/api/stream", "/app.js"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
    auto bad = c.Get(path, {{"Authorization", "Bearer " + std::string(64, '0')}});
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 401) << path;
  }
  auto wrong_cookie = c.Get("/api/tree", {{"Cookie", fmt::format("otpd_web_{}=nope", u.port)}});
  EXPECT_EQ(wrong_cookie->status, 401);

  // The token in the URL: a cookie, and a redirect that drops the token.
  auto login = c.Get(("/?token=" + u.token).c_str());
  ASSERT_TRUE(login);
  EXPECT_EQ(login->status, 303);
  EXPECT_EQ(login->get_header_value("Location"), "/");
  std::string cookie = login->get_header_value("Set-Cookie");
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
  httplib::Headers jar = {{"Cookie", cookie.substr(0, cookie.find(';'))}};
  auto page = c.Get("/", jar);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<script src=\"/app.js\""), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
  for (const char* asset : {"/app.js", "/style.css"}) {
    auto a = c.Get(asset, jar);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200) << asset;
  }

  // Actions: POST with the CSRF token from /api/session, else refused.
  pid_t beta = node.wait_running("beta");
  std::string body = R"({"verb":"kill","path":"beta"})";
  auto no_csrf = c.Post("/api/action", jar, body, "application/json");
  ASSERT_TRUE(no_csrf);
  EXPECT_EQ(no_csrf->status, 403);
  auto session = c.Get("/api/session", jar);
  ASSERT_TRUE(session);
  std::string csrf = json::parse(session->body).at("csrf");
  httplib::Headers h = jar;
  h.emplace("X-CSRF-Token", csrf);
  h.emplace("Origin", "http://evil.example");
  auto cross = c.Post("/api/action", h, body, "application/json");
  EXPECT_EQ(cross->status, 403) << "a foreign Origin is refused";
  EXPECT_EQ(node.pid_of("beta"), beta);
  h.erase("Origin");
  auto get_kill = c.Get("/api/action", h);
  EXPECT_NE(get_kill->status, 200) << "actions are POSTs only";
  auto kill = c.Post("/api/action", h, body, "application/json");
  ASSERT_TRUE(kill);
  EXPECT_EQ(kill->status, 200) << kill->body;
  EXPECT_GT(node.wait_running("beta", beta), 0);
  auto bad_verb = c.Post("/api/action", h, R"({"verb":"shutdown","path":"/"})", "application/json");
  EXPECT_EQ(bad_verb->status, 400);
  auto nobody = c.Post("/api/action", h, R"({"verb":"restart","path":"nope"})", "application/json");
  EXPECT_EQ(nobody->status, 409) << nobody->body;
}

// An open event stream: a raw socket that has read the first "tree" message.
core::unique_fd open_stream(const web_url& u) {
  core::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(u.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return {};
  }
  std::string req = "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                    u.token + "\r\n\r\n";
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return {};
  }
  std::string got;
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[65536];
  while (got.find("event: tree") == std::string::npos) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) {
      return {};
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  return fd;
}

TEST(ObserverWeb, MetricsAnswersWithTwentyEventStreamsOpen) {
  otpd_node node;
  node.start(web_tree());
  web_url u = wait_web(node);
  ASSERT_GT(u.port, 0);
  std::vector<core::unique_fd> streams;
  for (int i = 0; i < 20; ++i) {
    streams.push_back(open_stream(u));
    ASSERT_TRUE(streams.back()) << "stream " << i;
  }
  for (int i = 0; i < 5; ++i) {
    std::string m = get_metrics(u);
    EXPECT_NE(m.find("otpd_child_up"), std::string::npos) << "scrape " << i;
  }
  httplib::Client c("127.0.0.1", u.port);
  c.set_read_timeout(10, 0);
  auto tree = c.Get("/api/tree", bearer(u));
  ASSERT_TRUE(tree);
  EXPECT_EQ(tree->status, 200);
  // An event reaches every open stream.
  pid_t alpha = node.wait_running("alpha");
  shell_kill(alpha);
  for (auto& fd : streams) {
    std::string got;
    char buf[65536];
    while (got.find("event: event") == std::string::npos ||
           got.find("\"exited\"") == std::string::npos) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      ASSERT_GT(n, 0) << "a stream ended before the exit event";
      got.append(buf, static_cast<std::size_t>(n));
    }
  }
}

}  // namespace
}  // namespace otpd::itest

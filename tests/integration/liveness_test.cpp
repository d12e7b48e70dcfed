// Liveness and network readiness probes against real servers: a small
// python3 HTTP server that the test turns sick (503), silent (no answer)
// or deaf (its listener closed) through files it consumes, so only the
// instance running at that moment is affected and its replacement is
// healthy again.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {
namespace {

// argv: DIR PORT FAMILY(4|6). Writes DIR/state ("healthy", then "sick"
// once DIR/sick is taken) before it listens, DIR/hits after each request.
// Files it takes (renames away): DIR/sick (503 from now on), DIR/hang (no
// answer from now on), DIR/close (closes its listener: connections refused).
constexpr const char* server_py = R"PY(
import http.server, os, socket, sys, threading, time
d, port, fam = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mode = {'sick': False, 'hang': False}
hits = [0]
def put(name, text):
    tmp = os.path.join(d, name + '.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, name))
def take(name):
    try:
        os.rename(os.path.join(d, name), os.path.join(d, name + '.taken.%d' % os.getpid()))
        return True
    except FileNotFoundError:
        return False
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        hits[0] += 1
        put('hits', str(hits[0]))
        if mode['hang']:
            time.sleep(3600)
        self.send_response(503 if mode['sick'] else 200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if fam == '6' else socket.AF_INET
    daemon_threads = True
put('state', 'healthy')
srv = S(('::1' if fam == '6' else '127.0.0.1', port), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while True:
    time.sleep(0.02)
    if take('sick'):
        mode['sick'] = True
        put('state', 'sick')
    if take('hang'):
        mode['hang'] = True
    if take('close'):
        srv.shutdown()
        srv.server_close()
)PY";

struct server_fixture {
  otpd_node n;
  std::string d;
  int port = 0;
  // Debian's python3, not a version manager's shim (slow to start, and
  // not what a service would run).
  std::string py = "/usr/bin/python3";

  server_fixture() : d(n.dir() + "/srv") {
    EXPECT_EQ(::access(py.c_str(), X_OK), 0) << py << " is required (Debian's python3)";
    std::filesystem::create_directory(d);
    std::ofstream(n.dir() + "/server.py") << server_py;
    port = testing::free_port();
  }
  // One worker item for root_yaml running the server; extra: more keys.
  [[nodiscard]] std::string item(const std::string& extra, const char* family = "4") const {
    return fmt::format("    - {{id: web, command: [{}, {}/server.py, {}, '{}', '{}'], {}}}\n", py,
                       n.dir(), d, port, family, extra);
  }
  void touch(const std::string& name) const { std::ofstream(d + "/" + name) << "x"; }
  [[nodiscard]] int hits() const {
    std::string s = testing::read_file(d + "/hits");
    return s.empty() ? 0 : std::stoi(s);
  }
  // The events otpd keeps (otpctl prints one per line), as one JSON array.
  [[nodiscard]] json events() const {
    std::string out;
    EXPECT_EQ(n.ctl("events", &out), 0) << out;
    json all = json::array();
    std::size_t at = 0;
    while (at < out.size()) {
      auto nl = out.find('\n', at);
      std::string line = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
      at = nl == std::string::npos ? out.size() : nl + 1;
      json e = json::parse(line, nullptr, false);
      if (e.is_object()) {
        all.push_back(std::move(e));
      }
    }
    return all;
  }
  [[nodiscard]] json events_of(const std::string& type) const {
    json out = json::array();
    for (const auto& e : events()) {
      if (e.value("event", "") == type) {
        out.push_back(e);
      }
    }
    return out;
  }
};

// Waits until the child restarted after a liveness kill, then checks what
// status and the events say of it; returns the last probe_failed detail.
std::string expect_liveness_restart(server_fixture& f, pid_t old) {
  pid_t fresh = f.n.wait_running("web", old);
  EXPECT_GT(fresh, 0) << f.n.log();
  EXPECT_NE(fresh, old);
  json st = f.n.status();
  json c = otpd_node::find(st, "web");
  EXPECT_EQ(c["last_exit"], "liveness_failed") << c.dump();
  EXPECT_EQ(c["restarts"], 1) << c.dump();
  const json& x = c["last_exits"].back();
  EXPECT_EQ(x["reason_kind"], 10) << x.dump();
  // A restart like any other: the root's intensity counts it.
  EXPECT_EQ(st["intensity"]["used"], 1) << st.dump();
  json killed = f.events_of("liveness_failed");
  EXPECT_EQ(killed.size(), 1u) << f.events().dump();
  if (!killed.empty()) {
    EXPECT_EQ(killed[0]["pid"], old);
  }
  bool exited = false;
  for (const auto& e : f.events_of("exited")) {
    exited = exited || (e["pid"] == old && e["reason"] == "liveness_failed");
  }
  EXPECT_TRUE(exited) << f.events().dump();
  json failed = f.events_of("probe_failed");
  EXPECT_GE(failed.size(), 2u) << f.events().dump();
  return failed.empty() ? std::string() : failed.back().value("detail", "");
}

TEST(Liveness, HttpErrorStatusRestartsTheChildWithLivenessFailed) {
  server_fixture f;
  // transient: liveness_failed is abnormal, so even a transient child comes back.
  f.n.start(root_yaml(
      "one_for_one",
      f.item(fmt::format("restart: transient, readiness: {{http: 'http://127.0.0.1:{}/'}}, "
                         "liveness: {{http: 'http://localhost:{}/health', interval: 50, "
                         "timeout: 2000, failures: 2}}",
                         f.port, f.port)),
      10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  f.touch("sick");
  std::string last = expect_liveness_restart(f, pid);
  EXPECT_NE(last.find("liveness 2/2: http localhost:"), std::string::npos) << last;
  EXPECT_NE(last.find("/health: HTTP status 503"), std::string::npos) << last;
  json killed = f.events_of("liveness_failed");
  ASSERT_FALSE(killed.empty());
  EXPECT_NE(killed[0].value("detail", "").find("2 liveness probes failed in a row, last: http"),
            std::string::npos)
      << killed.dump();
}

TEST(Liveness, TcpRefusedRestartsTheChild) {
  server_fixture f;
  f.n.start(
      root_yaml("one_for_one",
                f.item(fmt::format("readiness: {{tcp: '127.0.0.1:{}'}}, "
                                   "liveness: {{tcp: '127.0.0.1:{}', interval: 50, failures: 3}}",
                                   f.port, f.port)),
                10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  f.touch("close");
  std::string last = expect_liveness_restart(f, pid);
  EXPECT_NE(last.find("liveness 3/3: tcp 127.0.0.1:"), std::string::npos) << last;
  EXPECT_NE(last.find("connection refused"), std::string::npos) << last;
}

TEST(Liveness, HttpWithoutAnswerFailsAtItsTimeout) {
  server_fixture f;
  f.n.start(
      root_yaml("one_for_one",
                f.item(fmt::format("readiness: {{tcp: ':{}'}}, "
                                   "liveness: {{http: '127.0.0.1:{}/', interval: 50, timeout: 200, "
                                   "failures: 2}}",
                                   f.port, f.port)),
                10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  f.touch("hang");
  std::string last = expect_liveness_restart(f, pid);
  EXPECT_NE(last.find("no answer in time"), std::string::npos) << last;
}

TEST(Liveness, CommandFailingRestartsTheChild) {
  server_fixture f;
  f.n.start(root_yaml(
      "one_for_one",
      f.item(fmt::format("readiness: {{tcp: ':{}'}}, "
                         "liveness: {{command: 'grep -qx healthy {}/state', interval: 50, "
                         "failures: 2}}",
                         f.port, f.d)),
      10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  f.touch("sick");
  std::string last = expect_liveness_restart(f, pid);
  EXPECT_NE(last.find("command ended: exit 1"), std::string::npos) << last;
}

TEST(Liveness, CommandPastItsTimeoutIsKilledAndCountsAsAFailure) {
  otpd_node n;
  // The probe never ends: each is killed at its timeout (otpd_node's
  // destructor fails the test if one is left running). The initial delay
  // keeps each life long enough for status to see it running.
  n.start(root_yaml("one_for_one",
                    sleeper("w",
                            ", liveness: {command: 'exec sleep 30', interval: 100, "
                            "timeout: 100, failures: 2, initial_delay: 1500}"),
                    100, 60));
  pid_t pid = n.wait_running("w");
  ASSERT_GT(pid, 0) << n.log();
  pid_t fresh = n.wait_running("w", pid);
  ASSERT_GT(fresh, 0) << n.log();
  EXPECT_EQ(otpd_node::find(n.status(), "w")["last_exit"], "liveness_failed");
  std::string log = n.log();
  EXPECT_NE(log.find("command exec sleep 30: no answer in time"), std::string::npos) << log;
}

TEST(Liveness, AHealthyProbeNeverRestarts) {
  server_fixture f;
  f.n.start(root_yaml("one_for_one",
                      f.item(fmt::format("readiness: {{http: 'localhost:{}'}}, "
                                         "liveness: {{http: 'localhost:{}/', interval: 20, "
                                         "timeout: 5000, failures: 1}}",
                                         f.port, f.port)),
                      10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  // Twenty probes answered (plus the readiness one).
  ASSERT_TRUE(testing::wait_until([&] { return f.hits() >= 21; })) << f.hits() << f.n.log();
  json c = otpd_node::find(f.n.status(), "web");
  EXPECT_EQ(c["pid"], pid);
  EXPECT_EQ(c["restarts"], 0);
  EXPECT_TRUE(f.events_of("probe_failed").empty()) << f.events().dump();
}

TEST(Liveness, Ipv6AddressesInBracketsWork) {
  server_fixture f;
  f.n.start(root_yaml("one_for_one",
                      f.item(fmt::format("readiness: {{http: 'http://[::1]:{}/ready'}}, "
                                         "liveness: {{tcp: '[::1]:{}', interval: 20, "
                                         "failures: 1}}",
                                         f.port, f.port),
                             "6"),
                      10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  EXPECT_EQ(f.hits(), 1);  // the readiness GET
  // The tcp probes keep passing: connect only, no request.
  f.touch("sick");
  ASSERT_TRUE(testing::wait_until([&] { return testing::read_file(f.d + "/state") == "sick"; }));
  json c = otpd_node::find(f.n.status(), "web");
  EXPECT_EQ(c["restarts"], 0);
  EXPECT_TRUE(f.events_of("probe_failed").empty()) << f.events().dump();
  // Its listener closed: refused on ::1 too, so it is restarted.
  f.touch("close");
  pid_t fresh = f.n.wait_running("web", pid);
  ASSERT_GT(fresh, 0) << f.n.log();
  EXPECT_EQ(otpd_node::find(f.n.status(), "web")["last_exit"], "liveness_failed");
}

TEST(Readiness, HttpWaitsForASuccessStatus) {
  server_fixture f;
  // The server only listens once python has started: the first probes are
  // refused, and readiness waits for the first 2xx.
  f.n.start(root_yaml("one_for_one",
                      f.item(fmt::format("readiness: {{http: 'http://localhost:{}/', "
                                         "interval: 20}}, start_timeout: 20000",
                                         f.port)) +
                          sleeper("after"),
                      10, 60));
  pid_t pid = f.n.wait_running("web");
  ASSERT_GT(pid, 0) << f.n.log();
  EXPECT_GE(f.hits(), 1);
  EXPECT_GT(f.n.wait_running("after"), 0);
}

TEST(Readiness, AHostNameThatDoesNotResolveIsAFailedStart) {
  otpd_node n;
  n.start(root_yaml("one_for_one",
                    sleeper("w",
                            ", readiness: {tcp: 'no-such-host.invalid:80'}, "
                            "start_timeout: 1500"),
                    0, 60),
          false);
  EXPECT_EQ(n.wait_exit(), 1) << n.log();
  std::string log = n.log();
  EXPECT_NE(log.find("not ready within its start timeout"), std::string::npos) << log;
}

}  // namespace
}  // namespace otpd::itest

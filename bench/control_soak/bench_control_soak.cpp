// bench_control_soak: otpd's control socket under a crowd. 200 clients for a
// while (default 60 s) against one otpd whose children crash-loop: status
// requests one per connection (as otpctl) and over kept connections,
// deliberately slow `events -f` readers, and GenServer calls to a
// stack_worker from caller processes. Prints what was answered and what
// failed, and otpd's RSS and fd count at the start and at the end (flat is
// the point: no figure here is asserted on). A program, never a test.
//
//   bench_control_soak [--seconds 60] [--one-shot 130] [--kept 40] [--slow 20]
//                      [--callers 10] [--loopers 4] [--max-connections 256]
// With --max-connections under the number of clients, the ones over the cap
// and its one-shot reserve are refused ("too many control connections"),
// counted apart from failures.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <otpd/bench/support.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/protocol/json_text.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/supervisor/control_client.hpp>

namespace fs = std::filesystem;
using json = otpd::protocol::json;
using otpd::supervisor::control_client;

namespace {

struct options {
  int seconds = 60;
  int one_shot = 130;         // threads: connect, status, close, again
  int kept = 40;              // threads: one connection, status after status
  int slow = 20;              // threads: events -f, one line every 200 ms
  int callers = 10;           // processes: call stack_worker in a loop
  int loopers = 4;            // children that exit 50 ms after they start
  int max_connections = 256;  // node.control.max_connections: room for every client
};

struct counters {
  std::atomic<long> answered{0};
  std::atomic<long> refused{0};     // "too many control connections" (the cap said no)
  std::atomic<long> failed{0};      // a well-behaved request without its reply
  std::atomic<long> reconnects{0};  // subscribers closed by otpd (expected: they lag)
};

long rss_kib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

long fd_count(pid_t pid) {
  long n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

enum class outcome { answered, refused, failed };

outcome status_of(control_client& c) {
  auto r = c.call(json{{"cmd", "status"}});
  if (r && r->value("ok", false)) {
    return outcome::answered;
  }
  if (r &&
      r->value("error", std::string()).find("too many control connections") != std::string::npos) {
    return outcome::refused;
  }
  return outcome::failed;
}

void count(counters& k, outcome o) {
  (o == outcome::answered ? k.answered : o == outcome::refused ? k.refused : k.failed)++;
}

// A caller process: calls the stack until the deadline; prints "ok failed".
[[noreturn]] void caller(const std::string& rt, int seconds, int out_fd) {
  namespace rt_ns = otpd::runtime;
  long ok = 0;
  long failed = 0;
  if (rt_ns::init({.runtime_dir = rt, .name = ""})) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    auto push = otpd::protocol::json_to_msgpack(json::array({"push", 1}));
    auto pop = otpd::protocol::json_to_msgpack(json::array({"pop"}));
    bool which = false;
    while (std::chrono::steady_clock::now() < until) {
      const auto& body = which ? pop : push;
      which = !which;
      auto r = rt_ns::call_message(rt_ns::address(std::string("stack")), body,
                                   std::chrono::milliseconds(5000));
      (r ? ok : failed)++;
    }
    rt_ns::shutdown();
  }
  std::string s = fmt::format("{} {}\n", ok, failed);
  (void)::write(out_fd, s.data(), s.size());
  ::_exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (a == "--seconds") {
      o.seconds = v;
    } else if (a == "--one-shot") {
      o.one_shot = v;
    } else if (a == "--kept") {
      o.kept = v;
    } else if (a == "--slow") {
      o.slow = v;
    } else if (a == "--callers") {
      o.callers = v;
    } else if (a == "--loopers") {
      o.loopers = v;
    } else if (a == "--max-connections") {
      o.max_connections = v;
    } else {
      fmt::print(stderr, "bench_control_soak: unknown option {}\n", a);
      return 100;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  const std::string bin = otpd::bench::program_dir();
  otpd::bench::temp_dir dir("otpd-soak");
  const std::string rt = dir.path() + "/rt";
  std::string yaml = fmt::format(
      "node:\n  control: {{max_connections: {}}}\nsupervisor:\n  strategy: one_for_one\n"
      "  max_restarts: 1000000\n  max_seconds: 1\n  children:\n",
      o.max_connections);
  yaml += fmt::format(
      "    - {{id: stack, name: stack, command: [{}/stack_worker], readiness: notify}}\n", bin);
  for (int i = 0; i < o.loopers; ++i) {
    yaml += fmt::format("    - {{id: loop{}, command: [sleep, '0.05'], stdout: null}}\n", i);
  }
  std::ofstream(dir.path() + "/otpd.yaml") << yaml;

  otpd::core::spawn_options so;
  so.argv = {bin + "/otpd", dir.path() + "/otpd.yaml", "--runtime-dir", rt};
  int log = ::open((dir.path() + "/otpd.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  so.fds = {{-1, 0}, {log, 1}, {log, 2}};
  auto otpd = otpd::core::spawn(so);
  ::close(log);
  if (!otpd) {
    fmt::print(stderr, "bench_control_soak: unable to start otpd: {}\n", otpd.error().message());
    return 111;
  }
  const pid_t pid = otpd->pid;
  // Up when the stack answers through the registry.
  bool up = otpd::testing::wait_until(
      [&] {
        control_client c;
        if (!c.connect(rt)) {
          return false;
        }
        auto r = c.call(json{{"cmd", "whereis"}, {"name", "stack"}});
        return r && r->value("ok", false);
      },
      std::chrono::seconds(30));
  if (!up) {
    fmt::print(stderr, "bench_control_soak: otpd did not come up; its log:\n{}\n",
               otpd::testing::read_file(dir.path() + "/otpd.log"));
    (void)otpd::core::kill_and_reap(pid, SIGKILL,
                                    otpd::core::deadline::after(std::chrono::seconds(5)));
    return 111;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // crash loops under way
  const long rss0 = rss_kib(pid);
  const long fds0 = fd_count(pid);

  // The callers first: a fork after the client threads start could copy a
  // lock one of them holds.
  std::vector<std::pair<pid_t, int>> callers;
  for (int i = 0; i < o.callers; ++i) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      continue;
    }
    pid_t c = ::fork();
    if (c == 0) {
      ::close(p[0]);
      caller(rt, o.seconds, p[1]);
    }
    ::close(p[1]);
    callers.emplace_back(c, p[0]);
  }
  std::atomic<bool> stop{false};
  counters one, kept, slow;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.one_shot; ++i) {
    threads.emplace_back([&] {
      while (!stop) {
        control_client c;
        count(one, c.connect(rt) ? status_of(c) : outcome::failed);
      }
    });
  }
  for (int i = 0; i < o.kept; ++i) {
    threads.emplace_back([&] {
      control_client c;
      bool connected = static_cast<bool>(c.connect(rt));
      while (!stop) {
        if (!connected) {
          kept.reconnects++;
          connected = static_cast<bool>(c.connect(rt));
          continue;
        }
        outcome o = status_of(c);
        count(kept, o);
        connected = o == outcome::answered;
      }
    });
  }
  for (int i = 0; i < o.slow; ++i) {
    threads.emplace_back([&] {
      while (!stop) {
        control_client c;
        if (!c.connect(rt) || !c.call(json{{"cmd", "events"}})) {
          slow.failed++;
          continue;
        }
        slow.answered++;
        while (!stop && c.read_line()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        if (!stop) {
          slow.reconnects++;  // otpd closed a subscriber that lagged
        }
      }
    });
  }
  long rss_peak = rss0;
  long fds_peak = fds0;
  for (int s = 0; s < o.seconds; ++s) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    rss_peak = std::max(rss_peak, rss_kib(pid));
    fds_peak = std::max(fds_peak, fd_count(pid));
  }
  stop = true;
  // Slow readers are blocked in a read: closing otpd's side is not ours to
  // do; they wake at the next event (the children keep crash-looping).
  for (auto& t : threads) {
    t.join();
  }
  long calls_ok = 0;
  long calls_failed = 0;
  for (auto& [c, fd] : callers) {
    std::string s;
    char buf[128];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
      s.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    ::waitpid(c, nullptr, 0);
    long a = 0;
    long b = 0;
    if (std::sscanf(s.c_str(), "%ld %ld", &a, &b) == 2) {
      calls_ok += a;
      calls_failed += b;
    }
  }
  // The sweep closes what is left within a couple of seconds.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const long rss1 = rss_kib(pid);
  const long fds1 = fd_count(pid);
  std::string restarts = "?";
  {
    control_client c;
    if (c.connect(rt)) {
      if (auto r = c.call(json{{"cmd", "status"}}); r && r->value("ok", false)) {
        long total = 0;
        for (const auto& ch : (*r)["children"]) {
          total += ch.value("restarts", 0);
        }
        restarts = std::to_string(total);
      }
    }
  }
  (void)otpd::core::kill_and_reap(pid, SIGTERM,
                                  otpd::core::deadline::after(std::chrono::seconds(10)));

  fmt::print(
      "bench_control_soak: {} s, {} clients ({} one-shot status, {} kept-connection "
      "status, {} slow events -f readers, {} calling processes), {} crash-looping "
      "children ({} restarts), max_connections {}\n\n",
      o.seconds, o.one_shot + o.kept + o.slow + o.callers, o.one_shot, o.kept, o.slow, o.callers,
      o.loopers, restarts, o.max_connections);
  fmt::print(
      "| clients | answered | refused by the cap | failed | note |\n|---|---|---|---|---|\n");
  fmt::print("| status, one per connection | {} | {} | {} | |\n", one.answered.load(),
             one.refused.load(), one.failed.load());
  fmt::print("| status, kept connection | {} | {} | {} | {} reconnects |\n", kept.answered.load(),
             kept.refused.load(), kept.failed.load(), kept.reconnects.load());
  fmt::print(
      "| events -f, slow readers | {} subscriptions | - | {} | {} closed by otpd for lagging |\n",
      slow.answered.load(), slow.failed.load(), slow.reconnects.load());
  fmt::print("| calls to stack_worker | {} | - | {} | |\n\n", calls_ok, calls_failed);
  fmt::print("| otpd | start | peak | end |\n|---|---|---|---|\n");
  fmt::print("| RSS (KiB) | {} | {} | {} |\n", rss0, rss_peak, rss1);
  fmt::print("| open fds | {} | {} | {} |\n", fds0, fds_peak, fds1);
  return 0;
}

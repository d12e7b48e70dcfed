// bench_observer: what watching a big tree costs. One otpd with N workers
// (default 1,000; otpd_test_child sleep) and otpd-web among them; three
// phases of S seconds each (default 20):
//   1. otpd-web stopped: nobody watching (the floor)
//   2. otpd-web running, nothing attached (its own status polling)
//   3. an SSE client reading the page's event stream, `otpctl top` in an
//      80x24 tmux window, and /metrics scraped every second
// Printed: otpd's CPU % (of one core), otpd-web's and top's, and the
// scrape latency (p50, p99, max) with the size of /metrics.
//   bench_observer [--children N] [--seconds S]
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <otpd/bench/support.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/observer/procfs.hpp>

namespace {

using namespace std::chrono_literals;
using otpd::testing::sh;
using otpd::testing::sh_output;
using otpd::testing::shell_quote;

std::string g_bin;

double cpu_seconds(pid_t pid) {
  auto s = otpd::observer::read_proc(pid);
  return s ? static_cast<double>(s->cpu_ticks) /
                 static_cast<double>(otpd::observer::ticks_per_second())
           : 0.0;
}

std::string ctl(const std::string& rt, const std::string& args) {
  return sh_output(fmt::format("{} --runtime-dir {} {} 2>/dev/null", shell_quote(g_bin + "/otpctl"),
                               shell_quote(rt), args));
}

pid_t pid_of(const std::string& rt, const std::string& path) {
  std::string out = ctl(rt, "status");
  std::regex re("\n" + path + " +running +(\\d+) ");
  std::smatch m;
  return std::regex_search(out, m, re) ? std::stoi(m[1]) : -1;
}

int running_count(const std::string& rt) {
  std::string out = ctl(rt, "status");
  int n = 0;
  for (std::size_t p = out.find(" running "); p != std::string::npos;
       p = out.find(" running ", p + 1)) {
    ++n;
  }
  return n;
}

struct phase_result {
  std::string name;
  double otpd_cpu = 0, web_cpu = -1, top_cpu = -1;
  std::vector<double> scrape_ms;
  std::size_t metrics_bytes = 0;
  std::uint64_t sse_bytes = 0;
};

double pct(std::vector<double> v, double q) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  int children = 1000;
  int seconds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--children") {
      children = std::stoi(argv[i + 1]);
    } else if (a == "--seconds") {
      seconds = std::stoi(argv[i + 1]);
    }
  }
  g_bin = otpd::bench::program_dir();
  if (!otpd::bench::have_program("tmux")) {
    std::fprintf(stderr, "bench_observer: tmux is needed for the top phase\n");
    return 1;
  }
  otpd::bench::temp_dir dir("otpd-obench");
  std::string rt = dir.path() + "/rt";
  std::string yaml =
      "supervisor:\n  strategy: one_for_one\n  max_restarts: 1000\n  max_seconds: 1\n  children:\n";
  yaml += fmt::format("    - {{id: web, command: [{}, --port, \"0\"], readiness: notify}}\n",
                      g_bin + "/otpd-web");
  for (int i = 0; i < children; ++i) {
    yaml += fmt::format("    - {{id: w{}, command: [{}, sleep]}}\n", i, g_bin + "/otpd_test_child");
  }
  std::ofstream(dir.path() + "/otpd.yaml") << yaml;
  std::string pidfile = dir.path() + "/otpd.pid";
  sh(fmt::format(
      "ulimit -n 65536 2>/dev/null; OTPD_LOG_LEVEL=warn {} --runtime-dir {} {} > {} 2>&1 & echo $! "
      "> {}",
      shell_quote(g_bin + "/otpd"), shell_quote(rt), shell_quote(dir.path() + "/otpd.yaml"),
      shell_quote(dir.path() + "/otpd.log"), shell_quote(pidfile)));
  pid_t otpd = std::stoi(otpd::testing::read_file(pidfile));
  if (!otpd::testing::wait_until([&] { return running_count(rt) >= children + 1; }, 120s)) {
    std::fprintf(stderr, "bench_observer: the tree did not come up:\n%s\n",
                 otpd::testing::read_file(dir.path() + "/otpd.log").c_str());
    sh(fmt::format("kill -9 {}", otpd));
    return 1;
  }
  std::vector<phase_result> results;
  double cold_ms = -1;
  auto measure = [&](phase_result& r, pid_t web, pid_t top,
                     const std::function<void()>& each_second) {
    double o0 = cpu_seconds(otpd), w0 = web > 0 ? cpu_seconds(web) : 0,
           t0 = top > 0 ? cpu_seconds(top) : 0;
    auto start = std::chrono::steady_clock::now();
    for (int s = 0; s < seconds; ++s) {
      auto next = start + std::chrono::seconds(s + 1);
      each_second();
      std::this_thread::sleep_until(next);
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.otpd_cpu = (cpu_seconds(otpd) - o0) / wall * 100;
    if (web > 0) {
      r.web_cpu = (cpu_seconds(web) - w0) / wall * 100;
    }
    if (top > 0) {
      r.top_cpu = (cpu_seconds(top) - t0) / wall * 100;
    }
  };

  // 1. Nobody watching.
  ctl(rt, "stop web");
  {
    phase_result r{"otpd-web stopped, nothing watching"};
    measure(r, -1, -1, [] {});
    results.push_back(r);
  }
  // 2. otpd-web running, nobody attached.
  ctl(rt, "start web");
  otpd::testing::wait_until([&] { return pid_of(rt, "web") > 0; }, 30s);
  pid_t web = pid_of(rt, "web");
  std::string url = ctl(rt, "web");
  std::smatch m;
  if (!std::regex_search(url, m, std::regex(R"(:(\d+)/\?token=([0-9a-f]+))"))) {
    std::fprintf(stderr, "bench_observer: no otpd-web URL (%s)\n", url.c_str());
    sh(fmt::format("kill {}", otpd));
    return 1;
  }
  int port = std::stoi(m[1]);
  std::string token = m[2];
  std::this_thread::sleep_for(3s);  // its first status and samples
  {
    phase_result r{"otpd-web running, nothing attached"};
    measure(r, web, -1, [] {});
    results.push_back(r);
  }
  // 3. A page's event stream, top, and a scrape a second.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> sse_bytes{0};
  std::thread reader([&] {
    otpd::core::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return;
    }
    std::string req = "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                      token + "\r\n\r\n";
    (void)::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL);
    timeval tv{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[65536];
    while (!stop) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n == 0) {
        return;
      }
      if (n > 0) {
        sse_bytes += static_cast<std::uint64_t>(n);
      }
    }
  });
  std::string sock = dir.path() + "/tmux.sock";
  sh(fmt::format("TERM=xterm-256color tmux -S {} -f /dev/null new-session -d -s top -x 80 -y 24 {}",
                 shell_quote(sock),
                 shell_quote(fmt::format("{} --runtime-dir {} top", shell_quote(g_bin + "/otpctl"),
                                         shell_quote(rt)))));
  pid_t top = -1;
  otpd::testing::wait_until(
      [&] {
        std::string p = sh_output(
            fmt::format("tmux -S {} list-panes -F '#{{pane_pid}}' 2>/dev/null", shell_quote(sock)));
        top = p.empty() ? -1 : std::stoi(p);
        return top > 0;
      },
      10s);
  std::this_thread::sleep_for(2s);
  {
    phase_result r{"SSE stream + top + /metrics every 1 s"};
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    httplib::Headers h = {{"Authorization", "Bearer " + token}};
    // The first scrape renders /metrics on the request path; after it,
    // otpd-web keeps the text current once a tick (printed apart).
    auto c0 = std::chrono::steady_clock::now();
    auto first = c.Get("/metrics", h);
    cold_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
    if (!first || first->status != 200) {
      cold_ms = -1;
    }
    std::this_thread::sleep_for(2s);
    std::uint64_t b0 = sse_bytes;
    measure(r, web, top, [&] {
      auto t0 = std::chrono::steady_clock::now();
      auto res = c.Get("/metrics", h);
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (res && res->status == 200) {
        r.scrape_ms.push_back(ms);
        r.metrics_bytes = res->body.size();
      }
    });
    r.sse_bytes = sse_bytes - b0;
    results.push_back(r);
  }
  stop = true;
  reader.join();
  sh(fmt::format("tmux -S {} kill-server >/dev/null 2>&1", shell_quote(sock)));
  ctl(rt, "shutdown");
  otpd::testing::wait_until([&] { return !otpd::testing::process_alive(otpd); }, 60s);

  fmt::print("\n{} workers + otpd-web under one otpd, {} s per phase, {} vCPU\n\n", children,
             seconds, std::thread::hardware_concurrency());
  fmt::print(
      "| phase | otpd CPU % | otpd-web CPU % | top CPU % | scrape p50 / p99 / max ms | /metrics | "
      "SSE |\n");
  fmt::print("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    auto opt = [](double v) { return v < 0 ? std::string("-") : fmt::format("{:.2f}", v); };
    std::string scrape =
        r.scrape_ms.empty() ? "-"
                            : fmt::format("{:.1f} / {:.1f} / {:.1f} ({} scrapes)",
                                          pct(r.scrape_ms, 0.5), pct(r.scrape_ms, 0.99),
                                          *std::max_element(r.scrape_ms.begin(), r.scrape_ms.end()),
                                          r.scrape_ms.size());
    fmt::print(
        "| {} | {:.2f} | {} | {} | {} | {} | {} |\n", r.name, r.otpd_cpu, opt(r.web_cpu),
        opt(r.top_cpu), scrape,
        r.metrics_bytes ? fmt::format("{:.0f} KiB", static_cast<double>(r.metrics_bytes) / 1024)
                        : "-",
        r.sse_bytes ? fmt::format("{:.0f} KiB/s", static_cast<double>(r.sse_bytes) / 1024 / seconds)
                    : "-");
  }
  fmt::print(
      "\nfirst scrape (renders on the request path): {:.1f} ms; load average at the end: {}\n",
      cold_ms, otpd::testing::read_file("/proc/loadavg"));
  return 0;
}

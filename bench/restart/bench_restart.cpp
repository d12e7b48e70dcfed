// bench_restart: how fast a supervisor replaces a SIGKILLed child, measured
// from the kill to the replacement's first instruction (restart_child writes
// a CLOCK_MONOTONIC stamp first thing), side by side in one run with a bare
// fork+execve floor, supervisord, s6-supervise and runsv; then scale: N
// children under one otpd (start time, memory, idle CPU, one_for_all restart)
// with supervisord and s6 at 1,000.
//
//   bench_restart [--kills 200] [--anchor-kills 50] [--slow-kills 20]
//                 [--idle-ms 1100] [--scale 1000,10000] [--anchor-scale 1000]
//                 [--skip-restart] [--skip-scale] [--mass N] [--containment N]
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <otpd/bench/support.hpp>
#include <otpd/core/clock.hpp>
#include <otpd/core/spawn.hpp>

namespace fs = std::filesystem;
using otpd::bench::percentiles;
using otpd::bench::summarize;
using otpd::core::monotonic_ns;

namespace {

struct options {
  int kills = 200;
  int anchor_kills = 50;
  int slow_kills = 20;
  int idle_ms = 1100;
  std::vector<int> scale = {1000, 10000};
  int anchor_scale = 1000;
  bool restart = true;
  bool scale_run = true;
  int mass = 0;         // --mass N: only the 500-killed-at-once figure, N children
  int containment = 0;  // --containment N: only limits vs none, and stopping a family
};

std::string g_bin;   // build/bin
std::string g_work;  // scratch dir

void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// New "<pid> <ns>" lines of a stamp file.
class stamps {
 public:
  explicit stamps(std::string path) : path_(std::move(path)) {}
  std::vector<std::pair<pid_t, std::int64_t>> read_new() {
    std::vector<std::pair<pid_t, std::int64_t>> out;
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return out;
    }
    char buf[65536];
    ssize_t n;
    while ((n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(offset_))) > 0) {
      pending_.append(buf, static_cast<std::size_t>(n));
      offset_ += static_cast<std::size_t>(n);
    }
    ::close(fd);
    std::size_t nl;
    while ((nl = pending_.find('\n')) != std::string::npos) {
      std::istringstream in(pending_.substr(0, nl));
      pid_t pid;
      long long ns;
      if (in >> pid >> ns) {
        out.emplace_back(pid, ns);
      }
      pending_.erase(0, nl + 1);
    }
    return out;
  }
  // Waits for a stamp from a pid other than old; nullopt after timeout_ms.
  std::optional<std::pair<pid_t, std::int64_t>> next(pid_t old, int timeout_ms = 10000) {
    std::int64_t end = monotonic_ns() + std::int64_t{timeout_ms} * 1000000;
    while (monotonic_ns() < end) {
      for (auto& s : read_new()) {
        if (s.first != old) {
          return s;
        }
      }
      // The stamp carries the time; polling slowly only paces the loop and
      // leaves the CPUs to the supervisor under test.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return std::nullopt;
  }
  // Waits until n stamps arrived; returns the latest stamp time or -1.
  std::int64_t wait_count(std::size_t n, int timeout_ms) {
    std::int64_t end = monotonic_ns() + std::int64_t{timeout_ms} * 1000000;
    while (monotonic_ns() < end) {
      for (auto& s : read_new()) {
        ++count_;
        last_ = std::max(last_, s.second);
        pids_.push_back(s.first);
      }
      if (count_ >= n) {
        return last_;
      }
      sleep_ms(2);
    }
    return -1;
  }
  void reset_count() {
    for (auto& s : read_new()) {
      pids_.push_back(s.first);
    }
    count_ = 0;
    last_ = 0;
  }
  // Every pid seen so far, oldest first.
  [[nodiscard]] const std::vector<pid_t>& pids() const { return pids_; }

 private:
  std::string path_;
  std::size_t offset_ = 0;
  std::string pending_;
  std::size_t count_ = 0;
  std::int64_t last_ = 0;
  std::vector<pid_t> pids_;
};

std::string fmt_p(const percentiles& p) {
  if (p.n == 0) {
    return "n/a";
  }
  return fmt::format("{:.2f} / {:.2f} / {:.2f} (n={})", p.p50, p.p90, p.p99, p.n);
}

pid_t launch(const std::vector<std::string>& argv, const std::string& log,
             const std::vector<std::string>& extra_env = {}) {
  otpd::core::spawn_options o;
  o.argv = argv;
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  o.fds = {{-1, 0}, {fd, 1}, {fd, 2}};
  if (!extra_env.empty()) {
    for (char** e = environ; *e != nullptr; ++e) {
      o.env.emplace_back(*e);
    }
    o.env.insert(o.env.end(), extra_env.begin(), extra_env.end());
    o.inherit_env = false;
  }
  auto r = otpd::core::spawn(o);
  ::close(fd);
  if (!r) {
    fmt::print(stderr, "bench_restart: unable to start {}: {}\n", argv[0], r.error().message());
    std::exit(111);
  }
  pid_t pid = r->pid;
  return pid;
}

void stop(pid_t pid, int sig = SIGTERM) {
  (void)otpd::core::kill_and_reap(pid, sig, otpd::core::deadline::after(std::chrono::seconds(5)));
}

// A supervisor running one restart_child, measured through its stamps.
struct one_child {
  std::string name;
  stamps st;
  pid_t sup = -1;
  pid_t child = -1;
  std::function<void()> shutdown;
  std::vector<double> idle, loop;

  explicit one_child(std::string n, const std::string& stamp_path)
      : name(std::move(n)), st(stamp_path) {}

  std::int64_t started_ns = 0;  // the current child's stamp

  bool first() {
    auto s = st.next(-1, 15000);
    if (s) {
      child = s->first;
      started_ns = s->second;
    }
    return s.has_value();
  }
  // "After idle" means the child itself has been up idle_ms: s6 and runit
  // pause 1 s after a run shorter than 1 s, so this must hold for each kill.
  void ensure_up_for(int idle_ms) const {
    std::int64_t left = started_ns + std::int64_t{idle_ms} * 1000000 - monotonic_ns();
    if (left > 0) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(left));
    }
  }
  // One kill; the latency in ms, or a negative value when nothing came back.
  double kill_once(int timeout_ms = 10000) {
    std::int64_t t0 = monotonic_ns();
    ::kill(child, SIGKILL);
    auto s = st.next(child, timeout_ms);
    if (!s) {
      return -1;
    }
    child = s->first;
    started_ns = s->second;
    return static_cast<double>(s->second - t0) / 1e6;
  }
};

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(g_work) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream(p) << s;
}

std::string child_bin() {
  return g_bin + "/restart_child";
}

std::unique_ptr<one_child> start_otpd(const std::string& tag, int n = 1,
                                      const char* strat = "one_for_one",
                                      const std::string& containment = "auto",
                                      const std::string& child_extra = "") {
  fs::path d = fresh_dir("otpd-" + tag);
  std::string stamp = (d / "stamp").string();
  std::string yaml = fmt::format(
      "node: {{name: bench}}\nsupervisor:\n  strategy: {}\n  max_restarts: 1000000\n"
      "  max_seconds: 1\n  children:\n",
      strat);
  for (int i = 0; i < n; ++i) {
    yaml += fmt::format("    - {{id: c{}, command: [{}, {}], stdout: null, stderr: null{}}}\n", i,
                        child_bin(), stamp, child_extra);
  }
  write(d / "otpd.yaml", yaml);
  auto c = std::make_unique<one_child>("otpd", stamp);
  c->sup = launch({g_bin + "/otpd", (d / "otpd.yaml").string(), "--runtime-dir",
                   (d / "rt").string(), "--containment", containment},
                  (d / "otpd.log").string(), {"OTPD_LOG_LEVEL=warn"});
  pid_t sup = c->sup;
  c->shutdown = [sup] { stop(sup); };
  return c;
}

std::unique_ptr<one_child> start_supervisord(const std::string& tag, int n = 1) {
  fs::path d = fresh_dir("supervisord-" + tag);
  std::string stamp = (d / "stamp").string();
  write(d / "supervisord.conf",
        fmt::format(
            "[supervisord]\nnodaemon=true\nlogfile={0}/supervisord.log\n"
            "pidfile={0}/supervisord.pid\nloglevel=warn\n"
            "[program:child]\ncommand={1} {2}\nautorestart=true\nstartsecs=0\n"
            "startretries=1000000\nnumprocs={3}\nprocess_name=%(program_name)s_%(process_num)d\n"
            "stdout_logfile=NONE\nstderr_logfile=NONE\n",
            d.string(), child_bin(), stamp, n));
  auto c = std::make_unique<one_child>("supervisord", stamp);
  c->sup = launch({"supervisord", "-n", "-c", (d / "supervisord.conf").string()},
                  (d / "out.log").string());
  pid_t sup = c->sup;
  c->shutdown = [sup] { stop(sup); };
  return c;
}

// s6-svscan over n service dirs (one s6-supervise each), or a single
// s6-supervise when n == 1. ./run is restart_child itself: no shell.
std::unique_ptr<one_child> start_s6(const std::string& tag, int n = 1) {
  fs::path d = fresh_dir("s6-" + tag);
  std::string stamp = (d / "stamp").string();
  fs::path scan = d / "scan";
  for (int i = 0; i < n; ++i) {
    fs::path s = scan / fmt::format("c{}", i);
    fs::create_directories(s);
    fs::create_symlink(child_bin(), s / "run");
  }
  auto c = std::make_unique<one_child>("s6-supervise", stamp);
  std::vector<std::string> env = {"RESTART_CHILD_STAMP=" + stamp};
  if (n == 1) {
    c->sup = launch({"s6-supervise", (scan / "c0").string()}, (d / "out.log").string(), env);
  } else {
    // s6-svscan watches at most 500 services unless told otherwise.
    c->sup = launch({"s6-svscan", "-c", std::to_string(n + 16), scan.string()},
                    (d / "out.log").string(), env);
  }
  pid_t sup = c->sup;
  std::string scan_s = scan.string();
  c->shutdown = [sup, scan_s, n] {
    if (n == 1) {
      std::system(fmt::format("s6-svc -dx {}/c0 >/dev/null 2>&1", scan_s).c_str());
      stop(sup, 0);
    } else {
      std::system(fmt::format("s6-svscanctl -t {} >/dev/null 2>&1", scan_s).c_str());
      stop(sup, 0);
    }
  };
  return c;
}

std::unique_ptr<one_child> start_runsv(const std::string& tag) {
  fs::path d = fresh_dir("runsv-" + tag);
  std::string stamp = (d / "stamp").string();
  fs::path s = d / "svc";
  fs::create_directories(s);
  fs::create_symlink(child_bin(), s / "run");
  auto c = std::make_unique<one_child>("runsv", stamp);
  c->sup =
      launch({"runsv", s.string()}, (d / "out.log").string(), {"RESTART_CHILD_STAMP=" + stamp});
  pid_t sup = c->sup;
  std::string s_s = s.string();
  c->shutdown = [sup, s_s] {
    std::system(fmt::format("sv -w 5 force-shutdown {} >/dev/null 2>&1", s_s).c_str());
    stop(sup);
  };
  return c;
}

// The floor: no supervisor, a bare fork + execve of the same child.
double floor_once(const std::string& stamp_path, stamps& st) {
  std::string child = child_bin();
  char* argv[] = {child.data(), const_cast<char*>(stamp_path.c_str()), const_cast<char*>("exit"),
                  nullptr};
  std::int64_t t0 = monotonic_ns();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execve(argv[0], argv, environ);
    ::_exit(127);
  }
  auto s = st.next(-1);
  int status;
  ::waitpid(pid, &status, 0);
  return s ? static_cast<double>(s->second - t0) / 1e6 : -1;
}

// The same through otpd::core::spawn (process group, death signal, fds,
// signal reset; waits for exec): what otpd pays per spawn, minus otpd.
double core_spawn_once(const std::string& stamp_path, stamps& st) {
  otpd::core::spawn_options opts;
  opts.argv = {child_bin(), stamp_path, "exit"};
  opts.fds = {{-1, 0}, {-1, 1}, {-1, 2}};
  std::int64_t t0 = monotonic_ns();
  auto r = otpd::core::spawn(opts);
  auto s = st.next(-1);
  if (r) {
    otpd::core::reap(r->pidfd.get());
  }
  return s && r ? static_cast<double>(s->second - t0) / 1e6 : -1;
}

// A fresh cgroup v2 directory under ours for core_spawn_cgroup_once; empty
// when none can be made (then those rows say n/a).
std::string bench_cgroup() {
  std::string own, line;
  std::ifstream cg("/proc/self/cgroup");
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) {
      own = line.substr(3) == "/" ? "" : line.substr(3);
    }
  }
  std::ifstream mi("/proc/self/mountinfo");
  while (std::getline(mi, line)) {
    if (line.find(" - cgroup2 ") == std::string::npos) {
      continue;
    }
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    std::string dir = point + own + fmt::format("/otpd-bench-{}", ::getpid());
    if (root == "/" && (::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST)) {
      return dir;
    }
  }
  return {};
}

// otpd::core::spawn into a cgroup: by clone3 CLONE_INTO_CGROUP, or (via_procs)
// by the child's write to cgroup.procs, the fallback where clone3 is refused.
double core_spawn_cgroup_once(const std::string& stamp_path, stamps& st, const std::string& cg,
                              bool via_procs) {
  if (cg.empty()) {
    return -1;
  }
  otpd::core::spawn_options opts;
  opts.argv = {child_bin(), stamp_path, "exit"};
  opts.fds = {{-1, 0}, {-1, 1}, {-1, 2}};
  opts.cgroup_procs = cg + "/cgroup.procs";
  opts.cgroup_via_procs = via_procs;
  std::int64_t t0 = monotonic_ns();
  // As otpd does: the directory is open only for the spawn.
  int dir = ::open(cg.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  opts.cgroup_fd = dir;
  auto r = otpd::core::spawn(opts);
  ::close(dir);
  auto s = st.next(-1);
  if (r) {
    otpd::core::reap(r->pidfd.get());
  }
  return s && r ? static_cast<double>(s->second - t0) / 1e6 : -1;
}

void restart_section(const options& o) {
  fmt::print("## Restart latency: SIGKILL -> replacement's first instruction (ms)\n\n");
  fmt::print(
      "after idle: the child had been up {} ms; crash loop: killed as soon as it was back\n\n",
      o.idle_ms);
  fs::path fd = fresh_dir("floor");
  std::string floor_stamp = (fd / "stamp").string();
  stamps floor_st(floor_stamp);
  std::vector<double> floor_idle, floor_loop, cs_idle, cs_loop;
  std::vector<double> cg3_idle, cg3_loop, cgp_idle, cgp_loop;
  std::string cg = bench_cgroup();

  // otpd in both containment modes, then the anchors (fewer kills each).
  std::vector<std::unique_ptr<one_child>> fast;
  fast.push_back(start_otpd("restart", 1, "one_for_one", "auto"));
  fast.push_back(start_otpd("restart-pgroup", 1, "one_for_one", "pgroup"));
  constexpr std::size_t otpd_entries = 2;
  fast.push_back(start_s6("restart"));
  fast.push_back(start_runsv("restart"));
  for (auto& c : fast) {
    if (!c->first()) {
      fmt::print(stderr, "bench_restart: {} did not start its child\n", c->name);
      std::exit(1);
    }
  }
  // After idle, round robin: each round sleeps a quarter of the idle time
  // before each target, so every target's child has been up >= idle_ms and
  // the machine is quiet when its kill lands.
  int slot = o.idle_ms / 4 + 1;
  for (int i = 0; i < o.kills; ++i) {
    sleep_ms(slot);
    floor_idle.push_back(floor_once(floor_stamp, floor_st));
    sleep_ms(slot);
    cs_idle.push_back(core_spawn_once(floor_stamp, floor_st));
    if (!cg.empty()) {
      sleep_ms(slot);
      cg3_idle.push_back(core_spawn_cgroup_once(floor_stamp, floor_st, cg, false));
      sleep_ms(slot);
      cgp_idle.push_back(core_spawn_cgroup_once(floor_stamp, floor_st, cg, true));
    }
    for (std::size_t k = 0; k < fast.size(); ++k) {
      if (k >= otpd_entries && i >= o.anchor_kills) {
        continue;
      }
      sleep_ms(slot);
      fast[k]->ensure_up_for(o.idle_ms);
      double ms = fast[k]->kill_once();
      if (ms >= 0) {
        fast[k]->idle.push_back(ms);
      }
    }
  }
  for (int i = 0; i < o.kills; ++i) {
    floor_loop.push_back(floor_once(floor_stamp, floor_st));
    cs_loop.push_back(core_spawn_once(floor_stamp, floor_st));
    if (!cg.empty()) {
      cg3_loop.push_back(core_spawn_cgroup_once(floor_stamp, floor_st, cg, false));
      cgp_loop.push_back(core_spawn_cgroup_once(floor_stamp, floor_st, cg, true));
    }
  }
  if (!cg.empty()) {
    ::rmdir(cg.c_str());
  }
  for (std::size_t k = 0; k < fast.size(); ++k) {
    int n = k < otpd_entries ? o.kills : o.slow_kills;
    if (k >= otpd_entries) {
      sleep_ms(o.idle_ms);  // a fresh start: s6/runit pause 1 s after a short-lived run
    }
    for (int i = 0; i < n; ++i) {
      double ms = fast[k]->kill_once();
      if (ms >= 0) {
        fast[k]->loop.push_back(ms);
      }
    }
  }
  for (auto& c : fast) {
    c->shutdown();
  }
  auto sd = start_supervisord("restart");
  if (sd->first()) {
    for (int i = 0; i < o.slow_kills; ++i) {
      sd->ensure_up_for(o.idle_ms);
      double ms = sd->kill_once();
      if (ms >= 0) {
        sd->idle.push_back(ms);
      }
    }
    for (int i = 0; i < o.slow_kills; ++i) {
      double ms = sd->kill_once();
      if (ms >= 0) {
        sd->loop.push_back(ms);
      }
    }
  }
  sd->shutdown();

  percentiles fi = summarize(floor_idle), fl = summarize(floor_loop);
  fmt::print(
      "| supervisor | after idle p50 / p90 / p99 | crash loop p50 / p90 / p99 | "
      "p50 vs floor (idle / loop) |\n|---|---|---|---|\n");
  fmt::print("| floor: fork+execve, no supervisor | {} | {} | 1.00x / 1.00x |\n", fmt_p(fi),
             fmt_p(fl));
  percentiles ci = summarize(cs_idle), cl = summarize(cs_loop);
  fmt::print("| otpd::core::spawn from the bench, no supervisor | {} | {} | {:.2f}x / {:.2f}x |\n",
             fmt_p(ci), fmt_p(cl), ci.p50 / fi.p50, cl.p50 / fl.p50);
  percentiles gi = summarize(cg3_idle), gl = summarize(cg3_loop);
  fmt::print(
      "| otpd::core::spawn into a cgroup, clone3 CLONE_INTO_CGROUP | {} | {} | {:.2f}x / {:.2f}x "
      "|\n",
      fmt_p(gi), fmt_p(gl), gi.n ? gi.p50 / fi.p50 : 0.0, gl.n ? gl.p50 / fl.p50 : 0.0);
  percentiles pi = summarize(cgp_idle), pl = summarize(cgp_loop);
  fmt::print(
      "| otpd::core::spawn into a cgroup, the child writes cgroup.procs | {} | {} | {:.2f}x / "
      "{:.2f}x |\n",
      fmt_p(pi), fmt_p(pl), pi.n ? pi.p50 / fi.p50 : 0.0, pl.n ? pl.p50 / fl.p50 : 0.0);
  auto row = [&](const one_child& c, const std::string& label) {
    percentiles i = summarize(c.idle), l = summarize(c.loop);
    fmt::print("| {} | {} | {} | {:.2f}x / {:.2f}x |\n", label, fmt_p(i), fmt_p(l),
               i.n ? i.p50 / fi.p50 : 0.0, l.n ? l.p50 / fl.p50 : 0.0);
  };
  row(*fast[0],
      "**otpd** (one_for_one, exec readiness; --containment auto: a cgroup per worker "
      "where it can)");
  row(*fast[1], "**otpd --containment pgroup** (process groups)");
  row(*fast[2], "s6-supervise (run = the child, no shell)");
  row(*fast[3], "runit runsv (run = the child, no shell)");
  row(*sd, "supervisord (startsecs=0, autorestart)");
  fmt::print("\n");
}

// ---- scale -------------------------------------------------------------------

struct usage {
  double rss_mib = 0, pss_mib = 0;
  long ticks = 0;
};

long field_kib(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      return std::atol(line.c_str() + key.size());
    }
  }
  return 0;
}

long cpu_ticks(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream rest(s.substr(close + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) {
      utime = std::atol(f.c_str());
    } else if (i == 15) {
      stime = std::atol(f.c_str());
    }
  }
  return utime + stime;
}

// The supervisor itself: pid plus (for s6) its s6-supervise processes, by name.
std::vector<pid_t> family(pid_t sup, const std::string& helper) {
  std::vector<pid_t> out = {sup};
  if (helper.empty()) {
    return out;
  }
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string n = e.path().filename().string();
    if (n.empty() || !std::isdigit(static_cast<unsigned char>(n[0]))) {
      continue;
    }
    std::ifstream comm(e.path() / "comm");
    std::string c;
    std::getline(comm, c);
    if (c == helper) {
      std::ifstream st(e.path() / "stat");
      std::string s((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
      auto close = s.rfind(')');
      std::istringstream rest(s.substr(close + 2));
      char state;
      pid_t ppid;
      rest >> state >> ppid;
      if (ppid == sup) {
        out.push_back(std::atoi(n.c_str()));
      }
    }
  }
  return out;
}

usage measure(const std::vector<pid_t>& pids) {
  usage u;
  for (pid_t p : pids) {
    u.rss_mib += static_cast<double>(field_kib(fmt::format("/proc/{}/status", p), "VmRSS:")) / 1024;
    u.pss_mib +=
        static_cast<double>(field_kib(fmt::format("/proc/{}/smaps_rollup", p), "Pss:")) / 1024;
    u.ticks += cpu_ticks(p);
  }
  return u;
}

// 500 children (the most recent pids) SIGKILLed at once: ms until all 500
// replacements have stamped.
std::string kill_many(one_child& c, std::size_t many) {
  c.st.reset_count();
  const auto& all = c.st.pids();
  if (all.size() < many) {
    return "-";
  }
  std::vector<pid_t> victims(all.end() - static_cast<std::ptrdiff_t>(many), all.end());
  std::int64_t k0 = monotonic_ns();
  for (pid_t v : victims) {
    ::kill(v, SIGKILL);
  }
  std::int64_t back = c.st.wait_count(many, 180000);
  return back > 0 ? fmt::format("{:.0f}", static_cast<double>(back - k0) / 1e6) : "timeout";
}

void scale_row(const std::string& label, one_child& c, int n, const std::string& helper,
               bool restart_all) {
  std::int64_t t0 = monotonic_ns();
  std::int64_t last = c.st.wait_count(static_cast<std::size_t>(n), 180000);
  double start_ms = last > 0 ? static_cast<double>(last - t0) / 1e6 : -1;
  sleep_ms(1000);  // let the start settle before measuring idle
  auto pids = family(c.sup, helper);
  usage a = measure(pids);
  sleep_ms(10000);
  usage b = measure(pids);
  double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double cpu_pct = static_cast<double>(b.ticks - a.ticks) / hz / 10.0 * 100.0;
  std::string restart = "-";
  if (restart_all) {
    c.st.reset_count();
    auto first = c.st.read_new();
    (void)first;
    // Any child: read one pid from the start stamps is not kept; use pgrep.
    std::string out;
    FILE* p = ::popen(fmt::format("pgrep -P {} | head -1", c.sup).c_str(), "r");
    char buf[64] = {0};
    if (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) {
      out = buf;
    }
    if (p != nullptr) {
      ::pclose(p);
    }
    pid_t victim = std::atoi(out.c_str());
    std::int64_t k0 = monotonic_ns();
    ::kill(victim, SIGKILL);
    std::int64_t back = c.st.wait_count(static_cast<std::size_t>(n), 180000);
    restart = back > 0 ? fmt::format("{:.0f}", static_cast<double>(back - k0) / 1e6) : "timeout";
  }
  std::string many = restart_all ? "-" : kill_many(c, 500);
  fmt::print("| {} | {} | {:.0f} | {:.1f} | {:.1f} | {:.2f} % | {} | {} |\n", label, n, start_ms,
             b.rss_mib, b.pss_mib, cpu_pct, restart, many);
  std::fflush(stdout);
}

void scale_section(const options& o) {
  fmt::print("## Scale: N children under one supervisor\n\n");
  fmt::print(
      "| supervisor | N | all started (ms) | RSS (MiB) | PSS (MiB) | CPU over 10 s idle | "
      "one_for_all: one killed, all N back (ms) | 500 killed at once, all back (ms) |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (int n : o.scale) {
    bool all = n <= 1000;
    auto c = start_otpd(fmt::format("scale{}", n), n, all ? "one_for_all" : "one_for_one");
    scale_row(all ? "**otpd** (one_for_all)" : "**otpd** (one_for_one)", *c, n, "", all);
    c->shutdown();
  }
  if (o.anchor_scale > 0) {
    auto s6 = start_s6("scale", o.anchor_scale);
    scale_row("s6-svscan + s6-supervise", *s6, o.anchor_scale, "s6-supervise", false);
    s6->shutdown();
    auto sd = start_supervisord("scale", o.anchor_scale);
    scale_row("supervisord", *sd, o.anchor_scale, "", false);
    sd->shutdown();
  }
  fmt::print("\n");
}

// The 500-killed-at-once figure alone (no idle wait): otpd and s6 with N
// one_for_one children each, in the same run. Repeated `rounds` times.
void mass_section(const options& o) {
  fmt::print("## 500 killed at once (N = {} children)\n\n", o.mass);
  fmt::print(
      "| supervisor | all N started (ms) | 500 killed at once, all back (ms), per round |\n"
      "|---|---|---|\n");
  auto row = [&](const std::string& label, one_child& c) {
    std::int64_t t0 = monotonic_ns();
    std::int64_t last = c.st.wait_count(static_cast<std::size_t>(o.mass), 180000);
    double start_ms = last > 0 ? static_cast<double>(last - t0) / 1e6 : -1;
    std::string rounds;
    for (int i = 0; i < 3; ++i) {
      sleep_ms(500);  // let the previous round settle
      rounds += (i != 0 ? " / " : "") + kill_many(c, 500);
    }
    fmt::print("| {} | {:.0f} | {} |\n", label, start_ms, rounds);
    std::fflush(stdout);
  };
  auto c = start_otpd(fmt::format("mass{}", o.mass), o.mass, "one_for_one");
  row("**otpd** (one_for_one)", *c);
  c->shutdown();
  auto s6 = start_s6("mass", o.mass);
  row("s6-svscan + s6-supervise", *s6);
  s6->shutdown();
  fmt::print("\n");
}

// Containment costs: restart latency with a memory limit (a cgroup of the
// worker's own in each v1 hierarchy on a hybrid host, joined by a
// cgroup.procs write each) against the same otpd without limits, and the
// time to stop a worker with 100 descendants in cgroup and pgroup mode.
void containment_section(const options& o) {
  fmt::print("## Containment: limits and stopping a family ({} kills)\n\n", o.containment);
  fs::path fd = fresh_dir("floor");
  std::string floor_stamp = (fd / "stamp").string();
  stamps floor_st(floor_stamp);
  std::vector<double> floor_idle, floor_loop;
  std::vector<std::unique_ptr<one_child>> c;
  c.push_back(start_otpd("cg", 1, "one_for_one", "auto"));
  c.push_back(start_otpd("cg-limits", 1, "one_for_one", "auto", ", limits: {memory: 256M}"));
  c.push_back(start_otpd("pg", 1, "one_for_one", "pgroup"));
  for (auto& x : c) {
    if (!x->first()) {
      fmt::print(stderr, "bench_restart: {} did not start its child\n", x->name);
      std::exit(1);
    }
  }
  int slot = o.idle_ms / 4 + 1;
  for (int i = 0; i < o.containment; ++i) {
    sleep_ms(slot);
    floor_idle.push_back(floor_once(floor_stamp, floor_st));
    for (auto& x : c) {
      sleep_ms(slot);
      x->ensure_up_for(o.idle_ms);
      if (double ms = x->kill_once(); ms >= 0) {
        x->idle.push_back(ms);
      }
    }
  }
  for (int i = 0; i < o.containment; ++i) {
    floor_loop.push_back(floor_once(floor_stamp, floor_st));
    for (auto& x : c) {
      if (double ms = x->kill_once(); ms >= 0) {
        x->loop.push_back(ms);
      }
    }
  }
  for (auto& x : c) {
    x->shutdown();
  }
  percentiles fi = summarize(floor_idle), fl = summarize(floor_loop);
  fmt::print(
      "| restart (ms) | after idle p50 / p90 / p99 | crash loop p50 / p90 / p99 | "
      "p50 vs floor (idle / loop) |\n|---|---|---|---|\n");
  fmt::print("| floor: fork+execve | {} | {} | 1.00x / 1.00x |\n", fmt_p(fi), fmt_p(fl));
  const char* labels[] = {"otpd, cgroup mode, no limits",
                          "otpd, cgroup mode, limits: {memory: 256M}", "otpd --containment pgroup"};
  for (std::size_t k = 0; k < c.size(); ++k) {
    percentiles i = summarize(c[k]->idle), l = summarize(c[k]->loop);
    fmt::print("| {} | {} | {} | {:.2f}x / {:.2f}x |\n", labels[k], fmt_p(i), fmt_p(l),
               i.n ? i.p50 / fi.p50 : 0.0, l.n ? l.p50 / fl.p50 : 0.0);
  }
  fmt::print("\n");

  // A worker whose shell leaves 100 sleeping descendants, then execs the
  // stamping child: `otpctl stop` to the last of the 101 processes gone
  // (they are otpd's to reap: it is their subreaper).
  fmt::print("| stop a worker with 100 descendants (ms) | p50 / p90 / p99 |\n|---|---|\n");
  for (const char* mode : {"auto", "pgroup"}) {
    fs::path d = fresh_dir(fmt::format("family-{}", mode));
    std::string stamp = (d / "stamp").string();
    write(d / "otpd.yaml",
          fmt::format("node: {{name: bench}}\nsupervisor:\n  strategy: one_for_one\n  children:\n"
                      "    - {{id: fam, shell: true, stdout: null, stderr: null, command: \"for i "
                      "in $(seq 100); do sleep 1000 & done; exec {} {}\"}}\n",
                      child_bin(), stamp));
    std::string rt = (d / "rt").string();
    pid_t sup = launch(
        {g_bin + "/otpd", (d / "otpd.yaml").string(), "--runtime-dir", rt, "--containment", mode},
        (d / "otpd.log").string(), {"OTPD_LOG_LEVEL=warn"});
    stamps st(stamp);
    std::vector<double> ms;
    pid_t old = -1;
    std::string ctl = g_bin + "/otpctl --runtime-dir " + rt;
    for (int i = 0; i < std::max(5, o.containment / 10); ++i) {
      auto s = st.next(old, 15000);
      if (!s) {
        break;
      }
      old = s->first;
      // The family: the main process's children (100 sleeps).
      std::vector<pid_t> family{old};
      std::string kids;
      for (int t = 0; t < 5000 && family.size() < 101; ++t) {
        std::ifstream in(fmt::format("/proc/{}/task/{}/children", old, old));
        family.assign(1, old);
        for (pid_t p; in >> p;) {
          family.push_back(p);
        }
        if (family.size() < 101) {
          sleep_ms(1);
        }
      }
      std::int64_t t0 = monotonic_ns();
      if (std::system((ctl + " stop fam >/dev/null").c_str()) != 0) {
        break;
      }
      for (pid_t p : family) {
        while (::kill(p, 0) == 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
      }
      ms.push_back(static_cast<double>(monotonic_ns() - t0) / 1e6);
      if (std::system((ctl + " start fam >/dev/null").c_str()) != 0) {
        break;
      }
    }
    stop(sup);
    fmt::print("| otpd --containment {} | {} |\n",
               std::string(mode) == "auto" ? "auto (cgroup)" : mode, fmt_p(summarize(ms)));
  }
  fmt::print("\n");
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) {
      out.push_back(std::atoi(item.c_str()));
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--kills") {
      o.kills = std::atoi(next().c_str());
    } else if (a == "--anchor-kills") {
      o.anchor_kills = std::atoi(next().c_str());
    } else if (a == "--slow-kills") {
      o.slow_kills = std::atoi(next().c_str());
    } else if (a == "--idle-ms") {
      o.idle_ms = std::atoi(next().c_str());
    } else if (a == "--scale") {
      o.scale = parse_list(next());
    } else if (a == "--anchor-scale") {
      o.anchor_scale = std::atoi(next().c_str());
    } else if (a == "--skip-restart") {
      o.restart = false;
    } else if (a == "--mass") {
      o.mass = std::atoi(next().c_str());
    } else if (a == "--containment") {
      o.containment = std::atoi(next().c_str());
    } else if (a == "--skip-scale") {
      o.scale_run = false;
    } else {
      fmt::print(stderr,
                 "usage: bench_restart [--kills N] [--anchor-kills N] [--slow-kills N] "
                 "[--idle-ms MS] [--scale N,N] [--anchor-scale N] [--skip-restart] "
                 "[--skip-scale] [--mass N] [--containment N]\n");
      return 100;
    }
  }
  g_bin = otpd::bench::program_dir();
  char tmpl[] = "/tmp/bench-restart.XXXXXX";
  g_work = ::mkdtemp(tmpl);
  ::signal(SIGPIPE, SIG_IGN);
  otpd::core::raise_fd_limit();
  if (o.containment > 0) {
    containment_section(o);
  } else if (o.mass > 0) {
    mass_section(o);
  } else if (o.restart) {
    restart_section(o);
  }
  if (o.scale_run && o.mass == 0 && o.containment == 0) {
    scale_section(o);
  }
  std::error_code ec;
  fs::remove_all(g_work, ec);
  return 0;
}

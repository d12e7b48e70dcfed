#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <otpd/testing/otpd_node.hpp>

namespace otpd::itest {

using namespace std::chrono_literals;

otpd_node::otpd_node() = default;

otpd_node::~otpd_node() {
  if (pid_ > 0) {
    (void)core::kill_and_reap(pid_, SIGTERM, core::deadline::after(testing::scaled(20s)),
                              pidfd_.get());
    pidfd_.reset();
    pid_ = -1;
  }
  // No orphans: every process otpd ever ran carries OTPD_RUNTIME_DIR=<our
  // dir> in its environment (pids could be reused by strangers; this cannot).
  std::vector<pid_t> left;
  EXPECT_TRUE(testing::wait_until(
      [&] {
        left = processes_of(rt());
        return left.empty();
      },
      5s))
      << "processes outlived otpd: " << fmt::format("{}", fmt::join(left, " "));
}

std::vector<pid_t> processes_of(const std::string& runtime_dir) {
  std::vector<pid_t> out;
  std::string needle = "OTPD_RUNTIME_DIR=" + runtime_dir;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) == 0) {
      continue;
    }
    pid_t pid = std::atoi(name.c_str());
    if (!testing::process_alive(pid)) {
      continue;
    }
    std::string env = testing::read_file(e.path().string() + "/environ");
    std::size_t at = 0;
    while (at < env.size()) {
      std::size_t end = env.find('\0', at);
      if (end == std::string::npos) {
        end = env.size();
      }
      if (env.compare(at, end - at, needle) == 0) {
        out.push_back(pid);
        break;
      }
      at = end + 1;
    }
  }
  return out;
}

void otpd_node::write_config(const std::string& yaml) const {
  std::string tmp = config_path() + ".tmp";
  std::ofstream(tmp) << yaml;
  ::rename(tmp.c_str(), config_path().c_str());
}

void otpd_node::start(const std::string& yaml, bool wait_ready,
                      const std::vector<std::string>& extra_args) {
  write_config(yaml);
  int log_fd =
      ::open((dir() + "/otpd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  core::spawn_options o;
  o.argv = launcher_;
  o.argv.insert(o.argv.end(), {testing::bin_path("otpd"), config_path(), "--runtime-dir", rt()});
  o.argv.insert(o.argv.end(), extra_args.begin(), extra_args.end());
  o.fds = {{-1, 0}, {log_fd, 1}, {log_fd, 2}};
  auto r = core::spawn(o);
  ::close(log_fd);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  pid_ = r->pid;
  pidfd_ = std::move(r->pidfd);
  if (wait_ready) {
    ASSERT_TRUE(testing::wait_until([&] {
      return !status().is_null() || !testing::process_alive(pid_);
    })) << log();
    ASSERT_FALSE(status().is_null()) << "otpd did not come up:\n" << log();
  }
}

int otpd_node::ctl(const std::string& args, std::string* out) const {
  int st = 0;
  std::string o = testing::sh_output(
      fmt::format("{} --runtime-dir {} {} 2>&1", testing::shell_quote(testing::bin_path("otpctl")),
                  testing::shell_quote(rt()), args),
      &st);
  if (out != nullptr) {
    *out = o;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

json otpd_node::status() {
  std::string out;
  if (ctl("--json status", &out) != 0) {
    return nullptr;
  }
  json j = json::parse(out, nullptr, false);
  if (j.is_discarded()) {
    return nullptr;
  }
  remember(j);
  return j;
}

void otpd_node::remember(const json& n) {
  if (n.contains("pid") && n["pid"].is_number() && n.contains("state")) {
    seen_.insert(n["pid"].get<pid_t>());
  }
  if (n.contains("children")) {
    for (const auto& c : n["children"]) {
      remember(c);
    }
  }
}

json otpd_node::find(const json& st, const std::string& path) {
  if (st.is_null() || !st.contains("children")) {
    return nullptr;
  }
  for (const auto& c : st["children"]) {
    if (c["path"] == path) {
      return c;
    }
    json in = find(c, path);
    if (!in.is_null()) {
      return in;
    }
  }
  return nullptr;
}

pid_t otpd_node::pid_of(const std::string& path) {
  json c = find(status(), path);
  return c.is_null() || c["pid"].is_null() ? -1 : c["pid"].get<pid_t>();
}

std::string otpd_node::state_of(const std::string& path) {
  json c = find(status(), path);
  return c.is_null() ? "absent" : c["state"].get<std::string>();
}

pid_t otpd_node::wait_running(const std::string& path, pid_t old) {
  pid_t now = -1;
  testing::wait_until([&] {
    json c = find(status(), path);
    if (c.is_null() || c["state"] != "running" || c["pid"].is_null()) {
      return false;
    }
    now = c["pid"].get<pid_t>();
    return now != old;
  });
  return now != old ? now : -1;
}

bool otpd_node::wait_state(const std::string& path, const std::string& state) {
  return testing::wait_until([&] { return state_of(path) == state; });
}

int otpd_node::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) {
    return exit_code_;
  }
  std::optional<core::child_exit> e;
  testing::wait_until(
      [&] {
        e = core::try_reap(pidfd_.get());
        return e.has_value();
      },
      timeout);
  if (!e) {
    return -1;
  }
  pid_ = -1;
  pidfd_.reset();
  exit_code_ = e->code == CLD_EXITED ? e->status : 128 + e->status;
  return exit_code_;
}

void otpd_node::signal(int sig) const {
  // kill(-1, sig) would reach every process we may signal.
  ASSERT_GT(pid_, 0) << "otpd is not running";
  ASSERT_EQ(::kill(pid_, sig), 0);
}

std::string root_yaml(std::string_view strategy, const std::string& children, int max_restarts,
                      int max_seconds) {
  std::string limits = max_restarts < 0 ? std::string()
                                        : fmt::format("  max_restarts: {}\n  max_seconds: {}\n",
                                                      max_restarts, max_seconds);
  return fmt::format("supervisor:\n  strategy: {}\n{}  children:\n{}", strategy, limits, children);
}

std::string sleeper(const std::string& id, const std::string& extra) {
  return fmt::format("    - {{id: {}, command: [{}, sleep]{}}}\n", id, otpd_node::child(), extra);
}

void shell_kill(pid_t pid, const char* sig) {
  // A pid from a failed wait is -1: `kill -9 -1` would kill every process
  // we may signal, 0 our own process group.
  ASSERT_GT(pid, 0) << "no process to kill";
  ASSERT_EQ(testing::sh(fmt::format("kill -{} {}", sig, pid)), 0);
}

}  // namespace otpd::itest

#pragma once

#include <sys/types.h>

#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <otpd/core/spawn.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::itest {

using json = nlohmann::json;

// One otpd under test: its own temp runtime dir, config and log. The
// destructor stops it and fails the test if any child it ever reported is
// still alive.
class otpd_node {
 public:
  otpd_node();
  ~otpd_node();
  otpd_node(const otpd_node&) = delete;
  otpd_node& operator=(const otpd_node&) = delete;
  otpd_node(otpd_node&&) = delete;
  otpd_node& operator=(otpd_node&&) = delete;

  [[nodiscard]] const std::string& dir() const { return tmp_.path(); }
  [[nodiscard]] std::string rt() const { return dir() + "/rt"; }
  [[nodiscard]] std::string config_path() const { return dir() + "/otpd.yaml"; }
  [[nodiscard]] static std::string child() { return testing::bin_path("otpd_test_child"); }

  void write_config(const std::string& yaml) const;
  // A command that start() puts in front of otpd's own argv, e.g. `unshare
  // --pid --fork` to run otpd as PID 1 of a new PID namespace; pid() is
  // then the launcher's pid.
  void set_launcher(std::vector<std::string> argv) { launcher_ = std::move(argv); }
  // Writes the config, starts otpd and waits until its control socket answers.
  void start(const std::string& yaml, bool wait_ready = true,
             const std::vector<std::string>& extra_args = {});
  // otpctl with these arguments; returns its exit status, output in *out.
  int ctl(const std::string& args, std::string* out = nullptr) const;
  // `otpctl --json status`, parsed; null when otpd does not answer.
  [[nodiscard]] json status();
  // The child at path in a status answer (null if absent).
  [[nodiscard]] static json find(const json& st, const std::string& path);
  [[nodiscard]] pid_t pid_of(const std::string& path);
  [[nodiscard]] std::string state_of(const std::string& path);
  // Waits until path runs with a pid other than old; returns it (or -1).
  pid_t wait_running(const std::string& path, pid_t old = -1);
  // Waits until state_of(path) is state ("stopped", "failed", "absent"...).
  bool wait_state(const std::string& path, const std::string& state);
  // Waits for otpd to exit; returns its exit code (or -1 on timeout).
  int wait_exit(std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));
  [[nodiscard]] bool running() const { return pid_ > 0; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Sends sig to otpd (a test failure when it is not running).
  void signal(int sig) const;
  [[nodiscard]] std::string log() const { return testing::read_file(dir() + "/otpd.log"); }
  // Every pid a status answer ever showed.
  [[nodiscard]] const std::set<pid_t>& seen() const { return seen_; }

 private:
  void remember(const json& n);

  testing::temp_dir tmp_{"otpd-it"};
  std::vector<std::string> launcher_;
  pid_t pid_ = -1;
  core::unique_fd pidfd_;
  int exit_code_ = -1;
  std::set<pid_t> seen_;
};

// A config of one root supervisor: strategy over children (YAML list items
// at 4 spaces, e.g. sleeper()s); max_restarts in max_seconds when
// max_restarts >= 0, otpd's defaults otherwise.
[[nodiscard]] std::string root_yaml(std::string_view strategy, const std::string& children,
                                    int max_restarts = -1, int max_seconds = 10);
// One child item for root_yaml: id runs `otpd_test_child sleep`; extra
// (", key: value" pairs) goes inside its braces.
[[nodiscard]] std::string sleeper(const std::string& id, const std::string& extra = "");

// Live processes whose environment says they belong to this runtime dir.
[[nodiscard]] std::vector<pid_t> processes_of(const std::string& runtime_dir);

// kill -SIG PID through a shell, as a user would; a test failure, and no
// signal, when pid is not positive.
void shell_kill(pid_t pid, const char* sig = "9");

}  // namespace otpd::itest

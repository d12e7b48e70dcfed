#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <otpd/core/runtime_dir.hpp>

namespace otpd::testing {

// What tests (and, without GoogleTest, benches: otpd::test_util) share.

// Timeouts in tests are generous and scaled by OTPD_TEST_TIMEOUT_MULTIPLIER
// (sanitizer builds and loaded CI machines set it above 1).
[[nodiscard]] std::chrono::milliseconds scaled(std::chrono::milliseconds ms);

// Polls pred until it is true or the (scaled) timeout passes. Waits on an
// event through a predicate; never a fixed sleep that hopes.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// The directory of the product binaries (build/bin): $OTPD_BIN_DIR, else the
// directory of the running test binary.
[[nodiscard]] std::string bin_dir();
[[nodiscard]] std::string bin_path(const std::string& name);

// A fresh private directory under /tmp, removed (recursively) on destruction
// (core's). Short prefixes: Unix socket paths must stay under 108 bytes.
using temp_dir = core::temp_dir;

// A copy of the program bin_path(name) that any user can execute, for tests
// that run a child as another user (e.g. nobody): the checkout, and so
// build/bin, may sit in a private directory (/root, mktemp -d) that user
// cannot enter. The copy lives in a fresh /tmp directory of mode 0755 (the
// file is 0755 too), removed on destruction. Throws when the copy fails.
// The project's libraries are static, so the copy needs nothing else from
// the checkout.
class world_exec_copy {
 public:
  explicit world_exec_copy(const std::string& name);
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  temp_dir dir_{"otpd-exec"};
  std::string path_;
};

// Open fds of this process (from /proc/self/fd).
[[nodiscard]] int count_open_fds();
// Children of this process that are zombies (state Z in /proc/<pid>/stat).
[[nodiscard]] std::vector<pid_t> zombie_children();
// Whether pid exists and is not a zombie.
[[nodiscard]] bool process_alive(pid_t pid);
// The parent pid and state letter of pid, from /proc; state 0 if gone.
[[nodiscard]] char process_state(pid_t pid);
// s as one word of a shell command line (single-quoted): paths such as
// bin_path() may hold spaces.
[[nodiscard]] std::string shell_quote(std::string_view s);
// Runs a shell command line, returns its exit status (as system(3)).
int sh(const std::string& command);
// Runs a shell command line and captures its stdout (what this process
// printed so far is flushed first, so it comes out before the command's).
[[nodiscard]] std::string sh_output(const std::string& command, int* status = nullptr);
// True where otpd's cgroup containment must work: running as root with a
// cgroup v2 hierarchy mounted (a pure v2 host's /sys/fs/cgroup, a hybrid
// one's /sys/fs/cgroup/unified). There a node started with --containment
// cgroup that says it cannot use cgroups is a failure; elsewhere (a user
// without a delegated subtree, no cgroup2 mount) the test skips.
[[nodiscard]] bool cgroup_mode_expected();
// Reads a whole file; empty when missing.
[[nodiscard]] std::string read_file(const std::string& path);

// Sends one datagram to the AF_UNIX datagram socket at address (a path, or
// "@name" for the abstract namespace), with fds passed as SCM_RIGHTS;
// returns 0, or the errno of the failure.
int send_datagram(const std::string& address, std::string_view data,
                  const std::vector<int>& fds = {});

// Where the program `name` is in $PATH; empty when it is not installed.
[[nodiscard]] std::string find_program(std::string_view name);
// A TCP port on 127.0.0.1 that nobody listened on a moment ago (bind port
// 0, read it back); 0 when no socket can be bound.
[[nodiscard]] int free_port();

}  // namespace otpd::testing

#pragma once

// Limits and figures: a worker's `limits:` (memory, cpu, pids) through the
// cgroup controllers the host has, its OOM kills, and the resource figures
// of `status`.
//
// cgroup v2 first: where otpd's v2 base (cgroup.hpp) has a controller in its
// cgroup.controllers, otpd enables it in the base's cgroup.subtree_control,
// so every worker's v2 cgroup has memory.max / cpu.max / pids.max (and the
// figures). On a hybrid host the v2 hierarchy has no controllers (they are
// bound to v1): then a worker with limits also gets a cgroup of its own in
// each v1 hierarchy of memory, pids, cpu and cpuacct, named like the v2 one
//   <v1 mount><otpd's cgroup there>/otpd-<hash of the runtime dir>/w-<child path>
// which the child joins before exec (fds of their cgroup.procs opened here,
// "0" written to each in the child: core::spawn_options::join_fds). Workers
// without limits never join v1: a cgroup.procs write takes the kernel's
// global threadgroup lock, and restarts stay as fast as before.
//
// See docs/CONTAINMENT.md.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <otpd/core/clock.hpp>
#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/supervisor/config.hpp>
#include <otpd/supervisor/daemon.hpp>

namespace otpd::supervisor::detail {

enum class resource : std::uint8_t { memory, cpu, pids };
[[nodiscard]] const char* to_string(resource r) noexcept;

// The v1 cgroups of one worker ("" where it has none in that hierarchy; cpu
// and cpuacct are one directory where the host mounts them together).
struct v1_dirs {
  std::string memory, pids, cpu, cpuacct;
  [[nodiscard]] bool any() const {
    return !memory.empty() || !pids.empty() || !cpu.empty() || !cpuacct.empty();
  }
};

// A worker's cgroups once prepared for a spawn: the v1 directories and the
// open cgroup.procs fds the child writes "0" to (closed after the spawn).
struct prepared_limits {
  v1_dirs v1;
  std::vector<core::unique_fd> join;
  // The OOM kill count of the worker's memory cgroup at the spawn (a memory
  // limit only): a higher count when it dies means the OOM killer.
  std::optional<std::uint64_t> oom_kills;
};

// The figures of status (absent: no controller gives it).
struct resource_figures {
  std::optional<std::uint64_t> cpu_usec, memory_current, memory_peak, pids_current;
};

class limit_controllers {
 public:
  // v2_base: otpd's base in the v2 hierarchy ("" without one, e.g. pgroup
  // mode); runtime_dir keys the v1 bases. Nothing is created in v1 yet.
  static limit_controllers open(const std::string& v2_base, const std::string& runtime_dir,
                                bool use_v1);

  // "" when r can be enforced, else why not.
  [[nodiscard]] std::string why_not(resource r) const;
  // Every limit of the config that cannot be enforced, as one message
  // ("FILE:LINE:COL: KEY: ..."); "" when all can.
  [[nodiscard]] std::string check(const config& c) const;

  // Writes w's limits into its v2 cgroup (v2_dir, "" without one) and its
  // v1 cgroups (made here), resets what an earlier limit left, and opens
  // the v1 cgroup.procs for the child to join. child_path names the v1
  // directories.
  [[nodiscard]] core::Result<prepared_limits> prepare(const std::string& child_path,
                                                      const std::string& v2_dir,
                                                      const limits_spec& l);
  // The OOM kills counted in a worker's memory cgroup so far.
  [[nodiscard]] std::optional<std::uint64_t> oom_kills(const std::string& v2_dir,
                                                       const v1_dirs& v1) const;
  [[nodiscard]] resource_figures figures(const std::string& v2_dir, const v1_dirs& v1) const;

  // The v1 directories of a worker that finished for good.
  static void remove(const v1_dirs& v1);
  // v1 cgroups a dead otpd left under the bases: what is in them is killed
  // (SIGKILL, waited for until `until`), the directories removed. Returns the
  // directories that held processes, with their pids.
  std::vector<std::pair<std::string, std::vector<pid_t>>> clean_leftovers(
      core::deadline until) const;
  // At the node's stop: every v1 cgroup of otpd, and the bases.
  void remove_all(core::deadline until) const;

 private:
  struct v1_hierarchy {
    std::string controllers;  // as in /proc/self/cgroup, e.g. "cpu,cpuacct"
    std::string base;         // <mount><own>/otpd-<hash>
    std::string why_not;      // "" when usable
  };
  friend std::string check_limits_for(const config& c, containment_choice choice);
  [[nodiscard]] const v1_hierarchy* v1_of(const char* controller) const;
  std::string dir_in(const v1_hierarchy& h, const std::string& child_path);

  std::string v2_base_;
  bool v2_memory_ = false, v2_pids_ = false, v2_cpu_ = false;
  std::string v2_why_not_;
  std::vector<v1_hierarchy> v1_;
  // v2 cgroups where a limit was written: reset when the worker no longer has it.
  std::unordered_set<std::string> v2_limited_;
};

// otpd --check: whether the limits of c can be enforced with this choice,
// without creating anything. "" when they can, else the message.
[[nodiscard]] std::string check_limits_for(const config& c, containment_choice choice);

}  // namespace otpd::supervisor::detail

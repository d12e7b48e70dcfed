#pragma once

// Containment: where otpd keeps what it starts, so that it can stop all of it.
//
// cgroup mode: every worker runs in a cgroup v2 directory of its own,
//   <v2 mount><otpd's own cgroup>/otpd-<hash of the runtime dir>/w-<child path>
// entered before exec (clone3 CLONE_INTO_CGROUP, else a write to
// cgroup.procs in the child). Whatever the worker forks, setsid()s or
// double-forks stays in it; cgroup.kill (Linux 5.14+) ends all of it at
// once, and the worker counts as stopped when cgroup.events says
// "populated 0". The directory is kept across restarts. The key is the
// runtime dir, never the node name: several otpd with the default name run
// at once, and the runtime dir lock makes one otpd per key.
//
// pgroup mode (--containment pgroup, or no writable v2 hierarchy): the
// worker leads a process group; a stop signals it, the group is killed when
// the worker is reaped, and the descendants found at the stop are killed
// through pidfds (so a reused pid is never hit). Its gap: a descendant that
// left the group (setsid) of a worker that died on its own, or that was
// left by an otpd killed with SIGKILL, is not found.
//
// See docs/CONTAINMENT.md.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <otpd/core/clock.hpp>
#include <otpd/core/result.hpp>

namespace otpd::supervisor::detail {

enum class containment_mode : std::uint8_t { cgroup, pgroup };
[[nodiscard]] const char* to_string(containment_mode m) noexcept;

// What a stale cgroup held when otpd started: killed, to be logged.
struct cgroup_leftover {
  std::string dir;
  std::vector<pid_t> pids;
};

// The cgroups of one otpd (one runtime dir).
class cgroup_root {
 public:
  // Finds a writable cgroup v2 hierarchy (/sys/fs/cgroup on a pure v2 host,
  // /sys/fs/cgroup/unified on a hybrid one, or a delegated subtree) whose
  // cgroups have cgroup.kill and cgroup.events, and creates the base
  // directory under otpd's own cgroup (from /proc/self/cgroup). The error's
  // message says why not (the caller falls back to process groups).
  [[nodiscard]] static core::Result<cgroup_root> open(const std::string& runtime_dir);

  [[nodiscard]] const std::string& base() const { return base_; }
  // The leaf otpd moved itself into at open (see needs_leaf), or "".
  [[nodiscard]] const std::string& moved_into() const { return moved_into_; }
  // The directory of a worker (not created): base/w-<escaped child path>.
  [[nodiscard]] std::string dir_of(const std::string& child_path) const;

  // Stale cgroups under base (a dead otpd's): every process still in one is
  // killed with cgroup.kill and waited for (until `until`); the directories
  // are removed. Returns those that held processes.
  std::vector<cgroup_leftover> clean_leftovers(core::deadline until) const;
  // Kills what is left in every cgroup under base, waits for them to empty
  // (until `until`) and removes them and base.
  void remove_all(core::deadline until) const;

 private:
  std::string base_;
  std::string moved_into_;
};

// The leaf of otpd's own cgroup that otpd moves itself into on a pure v2
// host. An otpd found in it (after a reexec) counts the leaf's parent as its
// own cgroup, so its base stays where its children are.
inline constexpr const char* self_leaf = "otpd-self";
// Whether otpd must move itself into a leaf before controllers can be
// enabled for its children (cgroup v2's no-internal-process rule: a
// non-root cgroup with processes cannot enable controllers for its
// subtree): its cgroup is not the hierarchy's root, offers one of memory,
// pids and cpu that its subtree_control does not enable yet, and holds no
// process but otpd (a shell that shares its cgroup keeps it: otpd does not
// move out from under it, and limits then say why they are refused). The
// arguments are the contents of cgroup.controllers, cgroup.subtree_control
// and cgroup.procs.
[[nodiscard]] bool needs_leaf(bool is_root, const std::string& controllers,
                              const std::string& subtree_control, const std::string& procs,
                              pid_t self);

// otpd's own cgroup in the first usable cgroup v2 mount (the parent of the
// base cgroup_root::open makes), or "" without one. Creates nothing.
[[nodiscard]] std::string v2_own_dir();
// The whole of a small file (cgroup and /proc files), "" when unreadable.
[[nodiscard]] std::string read_small_file(const std::string& path);
// Whether path is a directory; the directories in dir (full paths), for the
// cgroup trees of both versions.
[[nodiscard]] bool is_dir(const std::string& path);
[[nodiscard]] std::vector<std::string> subdirs(const std::string& dir);
// Writes s to a cgroup file: 0 or an errno.
int write_small_file(const std::string& path, const char* s);

// A child path as a cgroup directory name: "w-" then [A-Za-z0-9_-] as is and
// every other byte as %XX; over-long names end in a hash.
[[nodiscard]] std::string cgroup_name_of(const std::string& child_path);
// FNV-1a 64 of s, as 16 hex digits.
[[nodiscard]] std::string hash_hex(const std::string& s);

// mkdir of a worker's cgroup (an existing one is fine).
[[nodiscard]] core::Result<void> cgroup_make(const std::string& dir);
// "populated 1" in dir/cgroup.events; false when it is 0 or unreadable
// (a cgroup that is gone holds nothing).
[[nodiscard]] bool cgroup_populated(const std::string& dir);
// Writes "1" to dir/cgroup.kill: SIGKILL to every process in it, at once.
core::Result<void> cgroup_kill(const std::string& dir);
// The pids in dir/cgroup.procs.
[[nodiscard]] std::vector<pid_t> cgroup_pids(const std::string& dir);
// Waits (inotify on each cgroup.events) until none of dirs is populated, or
// until `until`; returns those still populated.
std::vector<std::string> cgroup_wait_empty(const std::vector<std::string>& dirs,
                                           core::deadline until);

}  // namespace otpd::supervisor::detail

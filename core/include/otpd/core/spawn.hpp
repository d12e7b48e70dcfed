#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <otpd/core/clock.hpp>
#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::core {

// How to start a child. The one spawn path of otpd: the daemon, the runtime's
// spawn/async and the tests all go through spawn() / spawn_function().
struct spawn_options {
  std::vector<std::string> argv;  // argv[0] is the program unless `program` is set
  // The file to execute, when it is not argv[0] (e.g. a command resolved to
  // an absolute path while argv[0] stays as the user wrote it).
  std::string program;
  // The whole environment as KEY=VALUE. Empty with inherit_env: the caller's.
  std::vector<std::string> env;
  bool inherit_env = true;
  bool search_path = true;   // look the program up in PATH when it has no '/'
  std::string cwd;           // empty: stay
  std::optional<uid_t> uid;  // switch user (root only)
  std::optional<gid_t> gid;
  bool new_process_group = true;  // the child leads its own process group
  // Sent to the child when its parent dies; 0: none. Set after the switch
  // to uid/gid (a credential change clears it), then the parent pid checked.
  int death_signal = SIGKILL;
  // A cgroup (v2) for the child to start in, before it runs any code of its
  // own: an O_DIRECTORY fd of it, used with clone3's CLONE_INTO_CGROUP (no
  // migration, no global lock). Where clone3 is refused (ENOSYS: an old
  // kernel, docker's default seccomp profile) the child writes "0" to
  // cgroup_procs instead, first thing after the fork. -1: stay in ours.
  int cgroup_fd = -1;
  std::string cgroup_procs;       // that cgroup's cgroup.procs file
  bool cgroup_via_procs = false;  // skip clone3: always the write (to measure it)
  // More cgroups to join (cgroup v1 hierarchies: memory, pids, cpu): fds of
  // their cgroup.procs, opened for writing by the caller; the child writes
  // "0" to each before anything else (and before the switch to uid/gid).
  std::vector<int> join_fds;
  // fds to place in the child: {fd in the parent, fd number in the child}.
  // -1 as the parent fd opens /dev/null there. Unlisted 0/1/2 are inherited;
  // every other fd is closed by CLOEXEC.
  std::vector<std::pair<int, int>> fds;

  // Identity and limits of an exec'd child (spawn / spawn_start only; all
  // prepared here, in the parent: the child after vfork makes system calls
  // only). Applied in this order, after the fds are placed and before the
  // credential switch, which may take the right to set them away:
  // rlimits, nice, oom_score_adj, umask, chdir; then groups, gid, uid;
  // then the ambient capabilities, no_new_privileges and the death signal.
  struct rlimit_setting {
    int resource = 0;  // RLIMIT_NOFILE, ...
    rlim_t soft = 0;   // RLIM_INFINITY: unlimited
    rlim_t hard = 0;
  };
  // Unless RLIMIT_NOFILE is listed, a child of a process that raised its
  // own soft limit with raise_fd_limit() gets the soft limit back that the
  // process started with: most programs expect select()'s 1024.
  std::vector<rlimit_setting> rlimits;
  std::optional<int> nice;           // setpriority(PRIO_PROCESS): -20..19
  std::optional<int> oom_score_adj;  // -1000..1000, written to /proc/self/oom_score_adj
  std::optional<mode_t> umask;
  // Supplementary groups, set with gid (setgroups) when the process may
  // (is root); empty: none. Resolved by the caller (getgrouplist): not in
  // the child, where NSS is not safe.
  std::vector<gid_t> groups;
  // Ambient capabilities (bit n: capability n), kept across the switch to
  // uid (PR_SET_KEEPCAPS) and raised after it, so that the program runs
  // with them (e.g. CAP_NET_BIND_SERVICE for a low port as a plain user).
  // The calling process must hold each in its permitted set.
  std::uint64_t ambient_caps = 0;
  bool no_new_privileges = false;  // PR_SET_NO_NEW_PRIVS before exec
  // A variable of the child's environment (with an explicit env) that holds
  // the child's own pid, e.g. "WATCHDOG_PID" (sd_notify's watchdog is meant
  // for that one process). Only the child knows its pid: it writes it,
  // after the fork, into a slot prepared here; an entry of env with that
  // name is replaced. Empty: none. At most 32 characters.
  std::string pid_env;
};

struct spawned {
  pid_t pid = -1;
  unique_fd pidfd;  // refers to the child until it is reaped; poll it for exit
};

// fork + execve with a CLOEXEC error pipe: returns only after execve succeeded
// (or failed, in which case the child has been reaped and the error is
// exec_error(the child's errno), with a message naming the program).
// Errors of our own (pipe, fork) are in the system category.
// Async-signal-safe calls only between fork and exec.
[[nodiscard]] Result<spawned> spawn(const spawn_options& options);

// The non-blocking half of spawn(): fork and return at once, before the child
// has exec'd, so that a loop can start hundreds of children without waiting
// for each one. `exec_fd` is the read end of the CLOEXEC error pipe (made
// O_NONBLOCK): watch it for readability and call read_exec_outcome() on it.
// The child is the caller's to reap in every case (also when exec fails: it
// then _exit(127)s after writing its errno).
struct started_spawn {
  pid_t pid = -1;
  unique_fd exec_fd;
};
[[nodiscard]] Result<started_spawn> spawn_start(const spawn_options& options);

// How spawn_start makes the child. vfork: clone(CLONE_VM | CLONE_VFORK) on a
// private stack, as posix_spawn does: no copy of the parent's page tables, so
// a big parent starts a child faster; the caller is suspended until the child
// has exec'd (or failed), which costs about what an exec costs, and the exec
// outcome is then already in the pipe. Builds with AddressSanitizer use fork
// for both: its interceptors must not run in a child sharing our memory.
enum class spawn_method : std::uint8_t { fork, vfork };
[[nodiscard]] Result<started_spawn> spawn_start(const spawn_options& options, spawn_method method);

// What the error pipe of spawn_start() says so far.
enum class exec_outcome : std::uint8_t {
  pending,  // nothing yet (EAGAIN): the child has not reached execve
  exec_ok,  // EOF: execve succeeded (the CLOEXEC write end closed with it)
  failed    // the child wrote its errno (in *child_errno) and exits 127
};
// Which part of the child's set-up failed (an operator's "Permission
// denied" alone does not say whether it was the exec, nice or setuid).
enum class spawn_step : std::uint8_t {
  exec,  // execve itself
  cgroup,
  setpgid,
  fds,
  rlimits,
  nice,
  oom_score_adj,
  chdir,
  groups,
  gid,
  uid,
  capabilities,
  no_new_privileges,
  death_signal
};
// "setpriority (nice)", "setuid (user)", ...
[[nodiscard]] const char* to_string(spawn_step step) noexcept;
[[nodiscard]] exec_outcome read_exec_outcome(int exec_fd, int* child_errno,
                                             spawn_step* step = nullptr) noexcept;

// fork and run fn in the child, which then _exit()s with fn's return value.
// Uses the same child set-up as spawn() (process group, death signal, fds;
// argv, env, cwd and user are ignored). fn runs in a copy of the caller's
// memory: it may allocate, but must not rely on other threads of the caller.
[[nodiscard]] Result<spawned> spawn_function(const spawn_options& options,
                                             const std::function<int()>& fn);

// A failed exec as an error_code: the child's errno in exec_category(), so
// that it tells "could not exec" from our own failures and still carries
// the errno: ec.value() is it, and ec == std::errc::... compares it.
[[nodiscard]] const std::error_category& exec_category() noexcept;
[[nodiscard]] inline std::error_code exec_error(int child_errno) noexcept {
  return {child_errno, exec_category()};
}

// waitid() on a pidfd without blocking. Returns the wait status shape
// (code, status) when the child has ended and is now reaped, nullopt
// while it runs.
struct child_exit {
  int code = 0;    // CLD_EXITED, CLD_KILLED or CLD_DUMPED
  int status = 0;  // exit code or signal number
};
[[nodiscard]] std::optional<child_exit> try_reap(int pidfd) noexcept;
// Blocking reap of a child by pidfd (waits until it exits).
child_exit reap(int pidfd) noexcept;

// Stops a child of ours: sends `sig`, waits for its exit until `until`,
// sends SIGKILL at the deadline, and reaps it. `pidfd` is the child's pidfd
// (-1: one is opened here; without one, SIGKILL at once and a blocking reap).
struct stopped_child {
  child_exit exit;
  bool killed = false;  // it outlived the deadline and got SIGKILL
};
stopped_child kill_and_reap(pid_t pid, int sig, deadline until, int pidfd = -1) noexcept;

// pidfd_open(2), with O_CLOEXEC semantics (pidfds are always CLOEXEC).
[[nodiscard]] Result<unique_fd> pidfd_open(pid_t pid) noexcept;

// Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
// The limit the process had before is remembered (fd_limit_at_start) and
// handed to the children spawn() execs instead of the raised one.
long raise_fd_limit() noexcept;
// RLIMIT_NOFILE as it was before the first raise_fd_limit() of this
// process; nullopt when it was never raised.
[[nodiscard]] std::optional<struct rlimit> fd_limit_at_start() noexcept;

}  // namespace otpd::core

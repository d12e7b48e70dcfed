#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>

#include <otpd/core/pipe.hpp>
#include <otpd/core/spawn.hpp>

extern char** environ;

namespace otpd::core {
namespace {

// What a child's set-up reports through the error pipe: the errno in the
// low 16 bits, the step that failed above them (one 4-byte write).
int failed_at(spawn_step step, int err) {
  return err | (static_cast<int>(step) << 16);
}

// Everything the child needs, built before fork so that the child only makes
// async-signal-safe calls.
struct prepared {
  std::vector<char*> argv;
  std::vector<char*> envp;
  char oom_score_adj[16] = {};  // as text; "" when not set
  std::size_t oom_score_adj_len = 0;
  // RLIMIT_NOFILE to hand back (raise_fd_limit raised ours), when the
  // options do not set it themselves.
  bool restore_nofile = false;
  struct rlimit nofile {};
  bool set_groups = false;  // we may (are root): setgroups with the gid
  // pid_env: "NAME=" then room for the child's pid, which the child writes
  // (see pid_env_digits); envp[pid_env_slot] points here once p is in its
  // final place (spawn_start), -1: none.
  char pid_env[64] = {};
  std::size_t pid_env_prefix = 0;
  long pid_env_slot = -1;
};

// RLIMIT_NOFILE before raise_fd_limit(): written once, before the flags;
// fd_limit_raised once the raise changed it (children then get it back).
struct rlimit fd_limit_original {};
std::atomic<bool> fd_limit_saved{false};
std::atomic<bool> fd_limit_raised{false};

prepared prepare(const spawn_options& o) {
  prepared p;
  if (o.oom_score_adj) {
    int n = std::snprintf(p.oom_score_adj, sizeof p.oom_score_adj, "%d", *o.oom_score_adj);
    p.oom_score_adj_len = n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  bool nofile_set = false;
  for (const auto& r : o.rlimits) {
    nofile_set = nofile_set || r.resource == RLIMIT_NOFILE;
  }
  if (!nofile_set && fd_limit_raised.load(std::memory_order_acquire)) {
    // The limits we started with (the raise left the hard one alone): no
    // system call here, on every restart.
    p.restore_nofile = true;
    p.nofile = fd_limit_original;
  }
  p.set_groups = ::geteuid() == 0;
  for (const auto& a : o.argv) {
    p.argv.push_back(const_cast<char*>(a.c_str()));
  }
  p.argv.push_back(nullptr);
  if (!o.env.empty() || !o.inherit_env) {
    bool with_pid = !o.pid_env.empty() && o.pid_env.size() <= 32;
    for (const auto& e : o.env) {
      if (with_pid && e.size() > o.pid_env.size() && e[o.pid_env.size()] == '=' &&
          e.compare(0, o.pid_env.size(), o.pid_env) == 0) {
        continue;  // replaced by the child's own pid
      }
      p.envp.push_back(const_cast<char*>(e.c_str()));
    }
    if (with_pid) {
      std::memcpy(p.pid_env, o.pid_env.data(), o.pid_env.size());
      p.pid_env[o.pid_env.size()] = '=';
      p.pid_env_prefix = o.pid_env.size() + 1;
      p.pid_env_slot = static_cast<long>(p.envp.size());
      p.envp.push_back(nullptr);  // set by spawn_start
    }
    p.envp.push_back(nullptr);
  }
  return p;
}

[[noreturn]] void child_fail(int err_fd, int err) {
  // The parent reads 4 bytes: our errno. Nothing else is safe to do here.
  ssize_t n = ::write(err_fd, &err, sizeof err);
  (void)n;
  ::_exit(127);
}

// Ambient capabilities for the program about to be exec'd: in the
// inheritable set (and, after a switch to another user, the permitted and
// effective sets: only these), then raised. Raw capget/capset: no libcap in
// the child. Returns 0 or errno.
int set_ambient_caps(std::uint64_t caps, bool switched) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) {
    return failed_at(spawn_step::capabilities, errno);
  }
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    auto part = static_cast<std::uint32_t>(caps >> (32 * i));
    data[i].inheritable = part;
    if (switched) {
      data[i].permitted = part;
      data[i].effective = part;
    }
  }
  if (::syscall(SYS_capset, &hdr, data) != 0) {
    return failed_at(spawn_step::capabilities, errno);
  }
  for (unsigned long cap = 0; cap < 64; ++cap) {
    if (((caps >> cap) & 1) != 0 && ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
      return failed_at(spawn_step::capabilities, errno);
    }
  }
  return 0;
}

// rlimits, nice, oom_score_adj, umask: before the credential switch, which
// may take the right to set them away. Returns 0 or errno.
int set_limits(const spawn_options& o, const prepared& p) {
  for (const auto& r : o.rlimits) {
    struct rlimit rl {};
    rl.rlim_cur = r.soft;
    rl.rlim_max = r.hard;
    if (::setrlimit(r.resource, &rl) != 0) {
      return failed_at(spawn_step::rlimits, errno);
    }
  }
  if (p.restore_nofile && ::setrlimit(RLIMIT_NOFILE, &p.nofile) != 0) {
    return failed_at(spawn_step::rlimits, errno);
  }
  if (o.nice && ::setpriority(PRIO_PROCESS, 0, *o.nice) != 0) {
    return failed_at(spawn_step::nice, errno);
  }
  if (p.oom_score_adj_len > 0) {
    int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return failed_at(spawn_step::oom_score_adj, errno);
    }
    ssize_t n = ::write(fd, p.oom_score_adj, p.oom_score_adj_len);
    int err = n == static_cast<ssize_t>(p.oom_score_adj_len) ? 0 : errno;
    ::close(fd);
    if (err != 0) {
      return failed_at(spawn_step::oom_score_adj, err);
    }
  }
  if (o.umask) {
    ::umask(*o.umask);
  }
  return 0;
}

// groups, gid, uid, then what must come after them. Raw system calls, as
// posix_spawn makes them: glibc's setuid() and friends broadcast the change
// to every thread of the process (its setxid signal), which a vfork child
// sharing our memory must not attempt. Returns 0 or errno.
int switch_credentials(const spawn_options& o, const prepared& p) {
  if (o.ambient_caps != 0 && o.uid && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
    return failed_at(spawn_step::capabilities, errno);
  }
  if (o.gid) {
    if (p.set_groups && ::syscall(SYS_setgroups, o.groups.size(), o.groups.data()) != 0) {
      return failed_at(spawn_step::groups, errno);
    }
    if (::syscall(SYS_setgid, *o.gid) != 0) {
      return failed_at(spawn_step::gid, errno);
    }
  }
  if (o.uid && ::syscall(SYS_setuid, *o.uid) != 0) {
    return failed_at(spawn_step::uid, errno);
  }
  if (o.ambient_caps != 0) {
    if (int err = set_ambient_caps(o.ambient_caps, o.uid.has_value()); err != 0) {
      return err;
    }
  }
  if (o.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return failed_at(spawn_step::no_new_privileges, errno);
  }
  return 0;
}

// Child-side set-up shared by spawn() and spawn_function(); p is null for
// spawn_function (no exec: no identity to set up). Returns 0 or errno.
int child_setup(const spawn_options& o, const prepared* p, pid_t parent) {
  // Signal dispositions: handlers of the parent make no sense here.
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::sigaction(sig, &sa, nullptr);
    }
  }
  if (o.new_process_group && ::setpgid(0, 0) != 0) {
    return failed_at(spawn_step::setpgid, errno);
  }
  // Move every source fd out of the way first (F_DUPFD_CLOEXEC above the
  // highest target), so that dup2 onto a target never clobbers another source.
  int high = 3;
  for (const auto& [from, to] : o.fds) {
    if (to >= high) {
      high = to + 1;
    }
  }
  int tmp[64];
  std::size_t n = o.fds.size() < 64 ? o.fds.size() : 64;
  for (std::size_t i = 0; i < n; ++i) {
    int from = o.fds[i].first;
    if (from < 0) {
      from = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (from < 0) {
        return failed_at(spawn_step::fds, errno);
      }
    }
    tmp[i] = ::fcntl(from, F_DUPFD_CLOEXEC, high);
    if (tmp[i] < 0) {
      return failed_at(spawn_step::fds, errno);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    // dup2 clears CLOEXEC on the target: exactly the fds we listed survive exec.
    if (::dup2(tmp[i], o.fds[i].second) < 0) {
      return failed_at(spawn_step::fds, errno);
    }
  }
  if (p != nullptr) {
    // After the fds: a low RLIMIT_NOFILE would refuse the F_DUPFD above.
    if (int err = set_limits(o, *p); err != 0) {
      return err;
    }
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) {
      return failed_at(spawn_step::chdir, errno);
    }
    if (int err = switch_credentials(o, *p); err != 0) {
      return err;
    }
  }
  // After the credential switch: the kernel clears the death signal when the
  // euid or egid changes, so set before setuid it would be gone for every
  // child with `user:`.
  if (o.death_signal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, o.death_signal) != 0) {
      return failed_at(spawn_step::death_signal, errno);
    }
    // The parent may have died between fork and prctl: then we would never
    // get the signal. (Re-parented, getppid() names a subreaper or init.)
    if (::getppid() != parent) {
      ::_exit(127);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  return 0;
}

// Blocks every signal but the faults for the duration of fork, so that no
// handler of the parent runs in the child before it resets dispositions.
class signal_block {
 public:
  signal_block() {
    sigset_t all;
    sigfillset(&all);
    for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) {
      sigdelset(&all, s);
    }
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~signal_block() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  signal_block(const signal_block&) = delete;
  signal_block& operator=(const signal_block&) = delete;
  signal_block(signal_block&&) = delete;
  signal_block& operator=(signal_block&&) = delete;

 private:
  sigset_t old_{};
};

// What a child of spawn_start needs, passed by pointer (clone's child gets
// one void* argument).
struct exec_child {
  const spawn_options* o;
  const prepared* p;
  pid_t parent;
  int err_fd;
  const char* join_procs;  // a cgroup.procs to write "0" to first; nullptr: none
  // Where the child writes its pid in decimal (pid_env), nullptr: nowhere.
  // The one write to memory that is not the child's own stack: a buffer
  // kept for it, which the parent (suspended until the exec with vfork)
  // never reads.
  char* pid_env_digits;
};

// The calling process's pid in decimal at out, NUL-terminated (room for 12).
void put_own_pid(char* out) {
  char digits[16];
  int n = 0;
  auto v = static_cast<unsigned long>(::getpid());
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < 15);
  for (int i = 0; i < n; ++i) {
    out[i] = digits[n - 1 - i];
  }
  out[n] = '\0';
}

// Moves the calling process into the cgroup of `procs` (its cgroup.procs).
// Before the credential switch: the write needs otpd's rights.
int join_cgroup(const char* procs) {
  int fd = ::open(procs, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno;
  }
  ssize_t n = ::write(fd, "0", 1);
  int err = n == 1 ? 0 : errno;
  ::close(fd);
  return err;
}

// The child of spawn_start: set up, then exec; never returns. Async-signal-
// safe calls only, and no writes to memory but its own stack: with vfork
// that memory is the parent's.
int run_exec_child(void* arg) {
  const auto* c = static_cast<const exec_child*>(arg);
  if (c->join_procs != nullptr) {
    if (int err = join_cgroup(c->join_procs); err != 0) {
      child_fail(c->err_fd, failed_at(spawn_step::cgroup, err));
    }
  }
  for (int fd : c->o->join_fds) {
    if (::write(fd, "0", 1) != 1) {
      child_fail(c->err_fd, failed_at(spawn_step::cgroup, errno));
    }
  }
  int err = child_setup(*c->o, c->p, c->parent);
  if (err != 0) {
    child_fail(c->err_fd, err);
  }
  if (c->pid_env_digits != nullptr) {
    put_own_pid(c->pid_env_digits);
  }
  char* const* argv = c->p->argv.data();
  char* const* envp = c->p->envp.empty() ? environ : c->p->envp.data();
  const char* file = c->o->program.empty() ? argv[0] : c->o->program.c_str();
  if (c->o->search_path && std::strchr(file, '/') == nullptr) {
    ::execvpe(file, argv, envp);
  } else {
    ::execve(file, argv, envp);
  }
  child_fail(c->err_fd, errno);
}

// clone3(2)'s argument (struct clone_args of <linux/sched.h>, the size with
// `cgroup`, Linux 5.7+), spelled out: glibc 2.36 has no clone3 wrapper, and
// <linux/sched.h> clashes with <sched.h>.
struct clone3_args {
  std::uint64_t flags;
  std::uint64_t pidfd;
  std::uint64_t child_tid;
  std::uint64_t parent_tid;
  std::uint64_t exit_signal;
  std::uint64_t stack;
  std::uint64_t stack_size;
  std::uint64_t tls;
  std::uint64_t set_tid;
  std::uint64_t set_tid_size;
  std::uint64_t cgroup;
};
constexpr std::uint64_t clone_into_cgroup = 0x200000000ULL;

// One stack per thread for CLONE_VM children, reused: the parent is
// suspended while the child uses it. execvpe puts a path buffer on it,
// hence 64 KiB.
constexpr std::size_t vm_stack_size = 64 * 1024;
char* vm_stack() {
  thread_local std::unique_ptr<char[]> stack(new char[vm_stack_size]);
  return stack.get();
}

#if defined(__x86_64__)
// clone3 with CLONE_VM: the child starts on the new stack right after the
// syscall instruction, where no C function could return from; so the child's
// side is written here: call fn(arg) on an aligned stack, exit with its
// result (fn never returns: it execs or _exits). rcx and r11 are the
// registers the syscall instruction clobbers. Returns the child's pid or
// -errno, like the raw system call.
long clone3_vm(clone3_args* args, int (*fn)(void*), void* arg) {
  long ret;
  register auto* r12 asm("r12") = fn;
  register void* r13 asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"
      "mov %%r13, %%rdi\n\t"
      "and $-16, %%rsp\n\t"
      "call *%%r12\n\t"
      "mov %%eax, %%edi\n\t"
      "mov %[exit_nr], %%eax\n\t"
      "syscall\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "0"(static_cast<long>(SYS_clone3)), "D"(args), "S"(sizeof(clone3_args)), "r"(r12),
        "r"(r13), [exit_nr] "i"(SYS_exit)
      : "rcx", "r11", "memory");
  return ret;
}
#endif

// Starts the child of ec inside the cgroup of cgroup_fd with clone3. vfork:
// CLONE_VM | CLONE_VFORK on vm_stack() (x86-64; elsewhere a fork-like
// clone3). Returns the pid or -errno; -ENOSYS also where the caller must
// fall back (no clone3, or no way to run the child on a stack of its own).
long clone3_into_cgroup(int cgroup_fd, spawn_method method, exec_child* ec) {
  clone3_args a{};
  a.exit_signal = SIGCHLD;
  a.cgroup = static_cast<std::uint64_t>(cgroup_fd);
#if defined(__x86_64__)
  if (method == spawn_method::vfork) {
    a.flags = CLONE_VM | CLONE_VFORK | clone_into_cgroup;
    a.stack = reinterpret_cast<std::uint64_t>(vm_stack());
    a.stack_size = vm_stack_size;
    return clone3_vm(&a, run_exec_child, ec);
  }
#else
  (void)method;
#endif
  // Like fork: the child runs on its own copy of our memory and stack.
  a.flags = clone_into_cgroup;
  long pid = ::syscall(SYS_clone3, &a, sizeof a);
  if (pid == 0) {
    run_exec_child(ec);
  }
  return pid < 0 ? -errno : pid;
}

// clone3 refused once (ENOSYS or E2BIG): not tried again.
std::atomic<bool> clone3_refused{false};

// Blocking reap by pid, for a child that has no pidfd (yet).
child_exit reap_pid(pid_t pid) noexcept {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    return {WCOREDUMP(status) ? CLD_DUMPED : CLD_KILLED, WTERMSIG(status)};
  }
  return {CLD_EXITED, WEXITSTATUS(status)};
}

class exec_category_impl final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "exec"; }
  [[nodiscard]] std::string message(int ev) const override {
    return "exec failed: " + std::system_category().message(ev);
  }
  // Compares like the errno it holds: ec == std::errc::no_such_file_or_directory.
  [[nodiscard]] std::error_condition default_error_condition(int ev) const noexcept override {
    return std::generic_category().default_error_condition(ev);
  }
};

}  // namespace

const std::error_category& exec_category() noexcept {
  static const exec_category_impl category;
  return category;
}

Result<unique_fd> pidfd_open(pid_t pid) noexcept {
  // glibc 2.36's <sys/pidfd.h> lacks extern "C": call the syscall directly.
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    return errno_code();
  }
  return unique_fd(fd);
}

// The blocking form of spawn_start: the same child, then a wait on its error
// pipe until execve has happened (EOF) or failed (the child's errno).
Result<spawned> spawn(const spawn_options& o) {
  auto started = spawn_start(o, spawn_method::fork);
  if (!started) {
    return started.error();
  }
  pid_t pid = started->pid;
  // Our own child cannot be reaped by anyone else, so its pid cannot be
  // reused before we wait: pidfd_open here is race-free.
  auto pidfd = pidfd_open(pid);
  int child_errno = 0;
  spawn_step step = spawn_step::exec;
  exec_outcome outcome;
  while ((outcome = read_exec_outcome(started->exec_fd.get(), &child_errno, &step)) ==
         exec_outcome::pending) {
    pollfd pfd{started->exec_fd.get(), POLLIN, 0};
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
  }
  if (outcome == exec_outcome::failed) {
    (void)reap_pid(pid);
    const std::string& file = o.program.empty() ? o.argv[0] : o.program;
    if (step != spawn_step::exec) {
      return {exec_error(child_errno), "unable to start " + file + ": " + to_string(step) + ": " +
                                           std::system_category().message(child_errno)};
    }
    return {exec_error(child_errno),
            "unable to exec " + file + ": " + std::system_category().message(child_errno)};
  }
  if (!pidfd) {
    // Only fails on fd exhaustion; the child runs but we cannot watch it.
    (void)kill_and_reap(pid, SIGKILL, deadline::never());
    return pidfd.error();
  }
  return spawned{pid, std::move(*pidfd)};
}

Result<started_spawn> spawn_start(const spawn_options& o) {
  return spawn_start(o, spawn_method::fork);
}

Result<started_spawn> spawn_start(const spawn_options& o, spawn_method method) {
  if (o.argv.empty()) {
    return errc::invalid_argument;
  }
  prepared p = prepare(o);
  auto pipe = make_pipe();
  if (!pipe) {
    return pipe.error();
  }
  unique_fd err_read = std::move(pipe->read);
  unique_fd err_write = std::move(pipe->write);
  // Non-blocking read end: the caller polls it on its loop.
  if (::fcntl(err_read.get(), F_SETFL, O_NONBLOCK) != 0) {
    return errno_code();
  }
#if defined(__SANITIZE_ADDRESS__)
  method = spawn_method::fork;
#endif
  bool into_cgroup = o.cgroup_fd >= 0 && !o.cgroup_via_procs && !clone3_refused.load();
  const char* join = o.cgroup_procs.empty() ? nullptr : o.cgroup_procs.c_str();
  char* pid_digits = nullptr;
  if (p.pid_env_slot >= 0) {
    p.envp[static_cast<std::size_t>(p.pid_env_slot)] = p.pid_env;
    pid_digits = p.pid_env + p.pid_env_prefix;
  }
  exec_child ec{&o, &p, ::getpid(), err_write.get(), into_cgroup ? nullptr : join, pid_digits};
  pid_t pid = -1;
  {
    // Also protects a CLONE_VM child: a parent's handler running in it
    // would run on our memory.
    signal_block block;
    if (into_cgroup) {
      long r = clone3_into_cgroup(o.cgroup_fd, method, &ec);
      if (r == -ENOSYS || r == -E2BIG) {
        // No clone3 (docker's seccomp profile answers ENOSYS), or one without
        // CLONE_INTO_CGROUP (before 5.7): join by writing cgroup.procs.
        clone3_refused = true;
        ec.join_procs = join;
      } else if (r < 0) {
        return std::error_code(static_cast<int>(-r), std::system_category());
      } else {
        pid = static_cast<pid_t>(r);
      }
    }
    if (pid > 0) {
      // Started by clone3 above.
    } else if (method == spawn_method::vfork) {
      pid = ::clone(run_exec_child, vm_stack() + vm_stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD,
                    &ec);
    } else {
      pid = ::fork();
      if (pid == 0) {
        run_exec_child(&ec);
      }
    }
  }
  if (pid < 0) {
    return errno_code();
  }
  // Our end of the write side must go, or EOF never comes.
  err_write.reset();
  return started_spawn{pid, std::move(err_read)};
}

const char* to_string(spawn_step step) noexcept {
  switch (step) {
    case spawn_step::exec:
      return "exec";
    case spawn_step::cgroup:
      return "joining its cgroup";
    case spawn_step::setpgid:
      return "setpgid";
    case spawn_step::fds:
      return "placing its fds";
    case spawn_step::rlimits:
      return "setrlimit (rlimits)";
    case spawn_step::nice:
      return "setpriority (nice)";
    case spawn_step::oom_score_adj:
      return "writing oom_score_adj";
    case spawn_step::chdir:
      return "chdir (cwd)";
    case spawn_step::groups:
      return "setgroups";
    case spawn_step::gid:
      return "setgid (group)";
    case spawn_step::uid:
      return "setuid (user)";
    case spawn_step::capabilities:
      return "raising its ambient capabilities";
    case spawn_step::no_new_privileges:
      return "PR_SET_NO_NEW_PRIVS";
    case spawn_step::death_signal:
      return "PR_SET_PDEATHSIG";
  }
  return "set-up";
}

exec_outcome read_exec_outcome(int exec_fd, int* child_errno, spawn_step* step) noexcept {
  int err = 0;
  ssize_t n;
  do {
    n = ::read(exec_fd, &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    // EAGAIN: still before execve. Any other error cannot tell us more than
    // the reaper will, so keep waiting for the child's exit.
    return exec_outcome::pending;
  }
  if (n == 0) {
    return exec_outcome::exec_ok;
  }
  // A pipe write of 4 bytes is atomic, so a short read cannot happen; treat
  // one as a failure without an errno rather than guess.
  if (n != static_cast<ssize_t>(sizeof err)) {
    err = 0;
  }
  if (child_errno != nullptr) {
    *child_errno = err & 0xffff;
  }
  if (step != nullptr) {
    int s = err >> 16;
    *step = s >= 0 && s <= static_cast<int>(spawn_step::death_signal) ? static_cast<spawn_step>(s)
                                                                      : spawn_step::exec;
  }
  return exec_outcome::failed;
}

Result<spawned> spawn_function(const spawn_options& o, const std::function<int()>& fn) {
  pid_t parent = ::getpid();
  pid_t pid;
  {
    signal_block block;
    pid = ::fork();
    if (pid == 0) {
      if (child_setup(o, nullptr, parent) != 0) {
        ::_exit(127);
      }
      int code = fn();
      ::_exit(code);
    }
  }
  if (pid < 0) {
    return errno_code();
  }
  auto pidfd = pidfd_open(pid);
  if (!pidfd) {
    (void)kill_and_reap(pid, SIGKILL, deadline::never());
    return pidfd.error();
  }
  return spawned{pid, std::move(*pidfd)};
}

std::optional<child_exit> try_reap(int pidfd) noexcept {
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  return child_exit{info.si_code, info.si_status};
}

child_exit reap(int pidfd) noexcept {
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED);
  } while (rc < 0 && errno == EINTR);
  return child_exit{info.si_code, info.si_status};
}

stopped_child kill_and_reap(pid_t pid, int sig, deadline until, int pidfd) noexcept {
  unique_fd own;
  if (pidfd < 0) {
    // Our child stays ours until reaped, so its pid cannot be reused: safe.
    if (auto fd = pidfd_open(pid)) {
      own = std::move(*fd);
      pidfd = own.get();
    }
  }
  stopped_child out;
  if (pidfd < 0) {
    // No pidfd (fd exhaustion): nothing to wait on with a deadline.
    ::kill(pid, SIGKILL);
    out.killed = sig != SIGKILL;
    out.exit = reap_pid(pid);
    return out;
  }
  ::kill(pid, sig);
  if (sig != SIGKILL) {
    // A pidfd polls readable once the process has exited.
    pollfd p{pidfd, POLLIN, 0};
    int rc;
    do {
      rc = ::poll(&p, 1, until.poll_timeout_ms());
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
      ::kill(pid, SIGKILL);
      out.killed = true;
    }
  }
  out.exit = reap(pidfd);
  return out;
}

long raise_fd_limit() noexcept {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return -1;
  }
  if (!fd_limit_saved.load(std::memory_order_acquire)) {
    fd_limit_original = rl;
    fd_limit_saved.store(true, std::memory_order_release);
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) {
      fd_limit_raised.store(true, std::memory_order_release);
    }
  }
  return static_cast<long>(rl.rlim_cur);
}

std::optional<struct rlimit> fd_limit_at_start() noexcept {
  if (!fd_limit_saved.load(std::memory_order_acquire)) {
    return std::nullopt;
  }
  return fd_limit_original;
}

}  // namespace otpd::core

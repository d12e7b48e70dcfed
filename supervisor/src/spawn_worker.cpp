// A spawn action of the tree, from the worker's spec to a running,
// watched child: build argv and env, prepare the child's fds, spawn,
// record the process, then arm its readiness (readiness.cpp). Whatever goes
// wrong is reported to the tree as a failed start, never thrown.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "node_daemon.hpp"
#include <fmt/format.h>

#include <otpd/core/log.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/ready.hpp>

extern char** environ;

namespace otpd::supervisor::detail {

using core::exit_reason;
using core::unique_fd;

// The fds made for one spawn. The child's ends (ready_w, writes) are closed
// in otpd as soon as the child has them.
struct node_daemon::child_fds {
  unique_fd ready_r, ready_w;  // the notify pipe, the child's end as fd 3
  std::vector<std::pair<unique_fd, capture_target>> reads;  // output pipes
  std::string path;  // the child's (inherit_prefixed puts it in front of each line)
  std::vector<unique_fd> writes;
  int error = 0;  // errno of a pipe that could not be made
};

namespace {

// otpd itself ran out of fds: nothing the child did, so not its failed start.
bool out_of_fds(int err) {
  return err == EMFILE || err == ENFILE;
}

}  // namespace

void node_daemon::spawn_worker(std::uint64_t uid) {
  node* n = tree_->find(uid);
  if (n == nullptr) {
    return;
  }
  const worker_spec& w = n->worker();
  // The notify socket, made when the first child that speaks sd_notify
  // starts (notify_children.cpp): without it such a child could never be
  // ready, so its start fails (or waits, when otpd is out of fds).
  if (w.speaks_sd_notify()) {
    if (auto made = ensure_notify_socket(); !made) {
      int err = &made.error().category() == &std::system_category() ? made.error().value() : EIO;
      if (out_of_fds(err)) {
        retry_spawn(uid, err);
        return;
      }
      core::log_error(
          "otpd {}: unable to make the notify socket: {}; counting it as a failed start", n->path,
          made.message());
      tree_->on_exit(uid, exit_reason{core::exit_kind::exec_failed, err});
      return;
    }
  }
  auto opts = spawn_options_for(*n);
  if (!opts) {
    // The env file or the user's entry could not be read: a failed start
    // like a failed exec (intensity counts it; an operator fixes the file
    // and restarts).
    core::log_error("otpd {}: unable to start {}: {}; counting it as a failed start", n->path,
                    w.argv[0], opts.message());
    int err = &opts.error().category() == &std::system_category() ? opts.error().value() : EINVAL;
    tree_->on_exit(uid, exit_reason{core::exit_kind::exec_failed, err});
    return;
  }
  core::spawn_options& o = *opts;
  child_fds fds;
  fds.path = n->path;
  prepare_child_fds(w, o, fds);
  if (out_of_fds(fds.error)) {
    retry_spawn(uid, fds.error);
    return;
  }
  // The worker's cgroup, kept across restarts: the child starts in it
  // (clone3 CLONE_INTO_CGROUP, else it joins before exec). The dir fd is
  // only open for the spawn: 10,000 children must not hold 10,000 fds.
  unique_fd cg_fd;
  bool via_procs = false;
  std::string cgroup = cgroup_for(*n, cg_fd, via_procs);
  if (cg_fd) {
    o.cgroup_fd = cg_fd.get();
    o.cgroup_procs = cgroup + "/cgroup.procs";
    o.cgroup_via_procs = via_procs;
  }
  // Its limits, and its v1 cgroups where the host has its controllers there.
  prepared_limits lim;
  if (!prepare_limits(*n, cgroup, o, lim)) {
    tree_->on_exit(uid, exit_reason{core::exit_kind::exec_failed, EPERM});
    return;
  }
  // The exec outcome is read on the loop (watch_exec), never waited for
  // here. vfork: otpd's page tables are not copied, which is most of what a
  // fork of otpd costs over a fork of a small program (restart latency, and
  // 500 restarts in a burst: measured 0.45-0.53 s with vfork against
  // 0.8-1.6 s with fork, see docs/benchmarks/restart.md).
  auto r = core::spawn_start(o, core::spawn_method::vfork);
  fds.ready_w.reset();
  fds.writes.clear();
  cg_fd.reset();
  lim.join.clear();
  if (!r) {
    // The categories by address (what operator== does): a virtual call here
    // needs UBSan's vptr check, which itself wants an fd we have not got.
    if (&r.error().category() == &std::system_category() && out_of_fds(r.error().value())) {
      retry_spawn(uid, r.error().value());
      return;
    }
    core::log_error("otpd {}: unable to spawn {}: {}; counting it as a failed start", n->path,
                    o.argv[0], r.error().message());
    tree_->on_exit(uid, exit_reason{core::exit_kind::exec_failed, r.error().value()});
    return;
  }
  // Reaping goes through waitid(P_ALL) on SIGCHLD, so no pidfd is kept:
  // one fd per child would eat the budget at 10,000 children. The exec fd
  // lives only until the child has exec'd.
  for (auto& [fd, target] : fds.reads) {
    output_.add(std::move(fd), std::move(target));
  }
  proc& p = register_worker(*n, r->pid);
  p.watchdog_usec = w.watchdog_usec;
  p.cgroup = std::move(cgroup);
  p.set_v1(std::move(lim.v1));
  p.oom_kills = lim.oom_kills;
  watch_exec(p, std::move(r->exec_fd));
  arm_readiness(p, w.readiness, std::move(fds.ready_r));
}

// cgroup mode: the directory of n's cgroup (made on its first start) and an
// fd of it in dir_fd; "" (and no fd) in pgroup mode, or when it cannot be
// had: the worker then starts in its process group only, and the log says so.
std::string node_daemon::cgroup_for(const node& n, unique_fd& dir_fd, bool& via_procs) {
  if (!cgroups_) {
    return {};
  }
  std::string dir = cgroups_->dir_of(n.path);
  // A cgroup once written to cgroup.kill kills every child that clone3
  // CLONE_INTO_CGROUP puts in it afterwards (seen on Linux 6.18: the fork
  // compares the cgroup's kill sequence with the parent's). It is empty by
  // now (the exit was reported only then): replace it with a fresh one, or,
  // should it still be busy, let the child join by writing cgroup.procs.
  if (auto k = killed_cgroups_.find(dir); k != killed_cgroups_.end()) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) {
      killed_cgroups_.erase(k);
    } else {
      via_procs = true;
    }
  }
  // O_RDONLY, not O_PATH: clone3 wants a real directory file of cgroupfs.
  dir_fd.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd && errno == ENOENT) {
    if (auto made = cgroup_make(dir); !made) {
      core::log_error("otpd {}: unable to create cgroup {}: {}; starting it without one", n.path,
                      dir, made.error().message());
      return {};
    }
    dir_fd.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!dir_fd) {
    core::log_error("otpd {}: unable to open cgroup {}: {}; starting it without one", n.path, dir,
                    std::strerror(errno));
    return {};
  }
  return dir;
}

// argv (the spec's plus a dynamic child's extra arguments), the whole
// environment, cwd, user, limits; stdin is /dev/null: a child must not
// read otpd's terminal. Everything is looked up here, in otpd: the child
// after vfork may only make system calls (no NSS, no file parsing). Fails
// when the env file or the user's entry cannot be read.
core::Result<core::spawn_options> node_daemon::spawn_options_for(const node& n) const {
  const worker_spec& w = n.worker();
  core::spawn_options o;
  o.argv = w.argv;
  o.program = w.program;
  o.argv.insert(o.argv.end(), n.extra_args.begin(), n.extra_args.end());
  o.inherit_env = false;
  o.cwd = w.cwd;
  o.fds.emplace_back(-1, 0);
  o.uid = w.uid;
  o.gid = w.gid;
  for (const auto& r : w.rlimits) {
    o.rlimits.push_back({r.resource, r.soft, r.hard});
  }
  o.nice = w.nice;
  o.oom_score_adj = w.oom_score_adj;
  o.umask = w.umask;
  o.ambient_caps = w.capabilities;
  o.no_new_privileges = w.no_new_privileges;
  // Under env (and over the node's environment): the user's login
  // variables, then the env file.
  env_list under;
  if (!w.user.empty() && w.uid) {
    auto login = user_login(w, under, o.groups);
    if (!login) {
      return login.fail();
    }
  }
  if (!w.env_file.empty()) {
    auto file = read_env_file(w.env_file);
    if (!file) {
      return file.fail();
    }
    under.insert(under.end(), file->begin(), file->end());
  }
  o.env = env_for(n, w.readiness.kind == readiness_kind::notify, under);
  if (w.speaks_sd_notify()) {
    add_notify_env(w, o);
  }
  return o;
}

// With `user:`: HOME, USER, LOGNAME and SHELL from the password database
// (unless node.env sets them: otpd's own HOME would be wrong for the child,
// an operator's choice is not), and the user's supplementary groups, as
// login(1) and systemd's User= give them. Looked up at every start, so an
// edit of /etc/group shows at the next restart.
core::Result<void> node_daemon::user_login(const worker_spec& w, env_list& env,
                                           std::vector<gid_t>& groups) const {
  errno = 0;
  struct passwd* pw = ::getpwuid(*w.uid);
  if (pw == nullptr) {
    int err = errno != 0 ? errno : ENOENT;
    return {std::error_code(err, std::system_category()),
            fmt::format("no password entry for user {} (uid {}) any more", w.user, *w.uid)};
  }
  auto set_by_node = [&](const char* key) {
    return std::any_of(cfg_->node.env.begin(), cfg_->node.env.end(),
                       [&](const auto& kv) { return kv.first == key; });
  };
  std::pair<const char*, const char*> vars[] = {{"HOME", pw->pw_dir},
                                                {"USER", pw->pw_name},
                                                {"LOGNAME", pw->pw_name},
                                                {"SHELL", pw->pw_shell}};
  for (const auto& [key, value] : vars) {
    if (!set_by_node(key)) {
      env.emplace_back(key, value != nullptr ? value : "");
    }
  }
  // getgrouplist puts the group given (the child's gid) in the list too.
  gid_t base = w.gid.value_or(pw->pw_gid);
  int count = 32;
  groups.resize(static_cast<std::size_t>(count));
  std::string name = pw->pw_name;
  while (::getgrouplist(name.c_str(), base, groups.data(), &count) < 0) {
    if (count <= static_cast<int>(groups.size())) {
      count = static_cast<int>(groups.size()) * 2;  // no size reported: grow
    }
    if (count > 65536) {
      return {std::make_error_code(std::errc::argument_list_too_long),
              fmt::format("user {} is in too many groups", w.user)};
    }
    groups.resize(static_cast<std::size_t>(count));
  }
  groups.resize(static_cast<std::size_t>(count));
  return {};
}

// The notify pipe (fd 3 in the child), then stdout and stderr. A pipe that
// cannot be made leaves the child without it (no ready fd: the start
// timeout decides; no output pipe: /dev/null).
void node_daemon::prepare_child_fds(const worker_spec& w, core::spawn_options& o, child_fds& fds) {
  if (w.readiness.kind == readiness_kind::notify) {
    if (auto p = core::make_pipe()) {
      fds.ready_r = std::move(p->read);
      fds.ready_w = std::move(p->write);
      o.fds.emplace_back(fds.ready_w.get(), 3);
    } else {
      fds.error = p.error().value();
    }
  }
  place_output(w.stdout_spec, 1, o, fds);
  // One pipe when both go to the same file, so lines keep their order.
  if (w.stderr_spec.kind == output_kind::file && w.stdout_spec.kind == output_kind::file &&
      w.stderr_spec.path == w.stdout_spec.path && !fds.writes.empty()) {
    o.fds.emplace_back(fds.writes.back().get(), 2);
  } else {
    place_output(w.stderr_spec, 2, o, fds);
  }
}

// stdout or stderr (target): inherited, /dev/null, a journal stream, or a
// pipe to a rotated file, to otpd's own stdout / stderr (inherit_prefixed)
// or to syslog.
void node_daemon::place_output(const output_spec& s, int target, core::spawn_options& o,
                               child_fds& fds) {
  if (s.kind == output_kind::null) {
    o.fds.emplace_back(-1, target);
  } else if (s.kind == output_kind::journald) {
    // The child writes into the journal itself: no pipe, no copy by otpd.
    auto j = core::journal_stream(fds.path, target == 1 ? 6 : 3, false);
    if (!j) {
      core::log_error("otpd {}: unable to reach the journal for its {}: {}; it goes to /dev/null",
                      fds.path, target == 1 ? "stdout" : "stderr", j.message());
      o.fds.emplace_back(-1, target);
      return;
    }
    o.fds.emplace_back(j->get(), target);
    fds.writes.push_back(std::move(*j));
  } else if (s.kind == output_kind::file || s.kind == output_kind::inherit_prefixed ||
             s.kind == output_kind::syslog) {
    auto p = core::make_pipe(O_NONBLOCK);
    if (!p) {
      fds.error = p.error().value();
      o.fds.emplace_back(-1, target);
      return;
    }
    // The child's end must block: most programs do not expect EAGAIN.
    ::fcntl(p->write.get(), F_SETFL, 0);
    o.fds.emplace_back(p->write.get(), target);
    capture_target t;
    t.timestamps = s.timestamps;
    if (s.kind == output_kind::file) {
      t.file = output_.sink_for(s);
    } else if (s.kind == output_kind::syslog) {
      constexpr int facility_user = 1 << 3;
      t.syslog_pri = facility_user | (target == 1 ? 6 : 3);  // info, err
      t.ident = fds.path;
    } else {
      t.out_fd = target;
      t.prefix = "[" + fds.path + "] ";
    }
    fds.reads.emplace_back(std::move(p->read), std::move(t));
    fds.writes.push_back(std::move(p->write));
  }
}

// otpd is out of file descriptors (EMFILE/ENFILE at a pipe of the spawn):
// the tree is not told (it is no failure of the child, and must not count
// toward its supervisor's intensity); the spawn is tried again after
// spawn_retry_ms. Logged at most once a second for the whole node.
void node_daemon::retry_spawn(std::uint64_t uid, int err) {
  node* n = tree_->find(uid);
  std::int64_t now = now_ms();
  if (now - fd_warn_ms_ >= 1000) {
    core::log_error(
        "otpd {}: unable to spawn: out of file descriptors ({}); not a failure of "
        "the child, trying again in {} ms",
        n != nullptr ? n->path : std::string("?"), std::strerror(err), spawn_retry_ms);
    fd_warn_ms_ = now;
  }
  auto t = uv::handle<uv_timer_t>::make();
  uv_timer_init(&loop_, t.get());
  t.get()->data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(uid));
  uv_timer_start(
      t.get(),
      [](uv_timer_t* h) {
        auto& d = self(h);
        auto id = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(h->data));
        d.spawn_retry_.erase(id);  // closes this timer after the callback
        d.spawn_worker(id);
        d.drain();
      },
      static_cast<std::uint64_t>(spawn_retry_ms), 0);
  spawn_retry_[uid] = std::move(t);
}

proc& node_daemon::register_worker(const node& n, pid_t pid) {
  proc& p = procs_[pid];
  p.pid = pid;
  p.uid = n.uid;
  p.path = n.path;
  p.name = n.spec->name;
  worker_pid_[n.uid] = pid;
  tree_->on_spawned(n.uid, pid);
  return p;
}

// ---- the exec outcome ----------------------------------------------------------

void node_daemon::watch_exec(proc& p, unique_fd exec_fd) {
  p.exec_fd = std::move(exec_fd);
  p.exec_poll = uv::handle<uv_poll_t>::make();
  if (uv_poll_init(&loop_, p.exec_poll.get(), p.exec_fd.get()) != 0) {
    // Cannot watch it: the reaper still reports the exit; only an exec
    // readiness would wait forever, so settle it now with a blocking read.
    p.exec_poll.discard();
    int fl = ::fcntl(p.exec_fd.get(), F_GETFL);
    ::fcntl(p.exec_fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    on_exec_outcome(p);
    return;
  }
  p.exec_poll.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(p.pid));
  uv_poll_start(p.exec_poll.get(), UV_READABLE | UV_DISCONNECT, [](uv_poll_t* h, int, int) {
    auto& d = self(h);
    auto it = d.procs_.find(static_cast<pid_t>(reinterpret_cast<std::intptr_t>(h->data)));
    if (it == d.procs_.end()) {
      return;
    }
    if (d.on_exec_outcome(it->second)) {
      d.drain();
    }
  });
}

// Reads the exec fd of a starting worker. Returns true once the outcome is
// known (the fd and its watch are then closed): EOF makes an exec-readiness
// worker ready; an errno marks the start failed, and the reaper reports it
// with that reason when the child's _exit(127) arrives.
bool node_daemon::on_exec_outcome(proc& p) {
  if (!p.exec_fd) {
    return false;
  }
  int err = 0;
  core::spawn_step step = core::spawn_step::exec;
  auto outcome = core::read_exec_outcome(p.exec_fd.get(), &err, &step);
  if (outcome == core::exec_outcome::pending) {
    return false;
  }
  p.exec_poll.reset();
  p.exec_fd.reset();
  if (outcome == core::exec_outcome::failed) {
    if (!p.start_failed && !p.ready && !p.stopping) {
      node* n = tree_->find(p.uid);
      // The step only when it was not the exec: "unable to spawn prog:
      // setpriority (nice): Permission denied".
      std::string at = step == core::spawn_step::exec ? std::string()
                                                      : std::string(core::to_string(step)) + ": ";
      core::log_error("otpd {}: unable to spawn {}: {}{}; counting it as a failed start", p.path,
                      n != nullptr ? n->worker().argv[0] : std::string("?"), at,
                      std::strerror(err));
      p.start_failed = true;
      p.fail_reason = {core::exit_kind::exec_failed, err};
      p.stop_readiness_watch();
    }
    return true;
  }
  node* n = tree_->find(p.uid);
  if (n != nullptr && n->worker().readiness.kind == readiness_kind::exec && !p.stopping &&
      !p.start_failed) {
    worker_ready(p);
  }
  return true;
}

void node_daemon::worker_ready(proc& p) {
  p.ready = true;
  p.stop_readiness_watch();
  arm_liveness(p);
  arm_watchdog(p);
  tree_->on_ready(p.uid);
}

// Readiness failed (timeout, EOF on the ready fd): kill the whole group; the
// reaper then reports the start failure with this reason.
void node_daemon::worker_start_failed(proc& p, const exit_reason& why, const std::string& what) {
  if (p.start_failed || p.ready) {
    return;
  }
  core::log_error("otpd {}: start failed: {}; killing pid {}", p.path, what, p.pid);
  p.start_failed = true;
  p.fail_reason = why;
  p.stop_readiness_watch();
  kill_everything_of(p);
}

// ---- the environment -----------------------------------------------------------

void node_daemon::rebuild_base_env() {
  base_env_.clear();
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) {
      base_env_[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  for (const auto& [k, v] : cfg_->node.env) {
    base_env_[k] = v;
  }
  base_env_.erase(core::ready_fd_env);
  base_env_.erase("OTPD_NAME");
  base_env_["OTPD_RUNTIME_DIR"] = dir_;
  base_env_["OTPD_NODE"] = cfg_->node.name;
  base_env_.erase("OTPD_CHILD");
  base_list_.clear();
  for (const auto& [k, v] : base_env_) {
    base_list_.push_back(k + "=" + v);
  }
}

std::vector<std::string> node_daemon::env_for(const node& n, bool notify,
                                              const env_list& under) const {
  if (n.worker().env.empty() && under.empty()) {
    // The common case, on the restart path: no merge needed.
    std::vector<std::string> out;
    out.reserve(base_list_.size() + 3);
    out = base_list_;
    out.push_back("OTPD_CHILD=" + n.path);
    if (!n.spec->name.empty()) {
      out.push_back("OTPD_NAME=" + n.spec->name);
    }
    if (notify) {
      out.emplace_back(std::string(core::ready_fd_env) + "=3");
    }
    return out;
  }
  std::map<std::string, std::string> env = base_env_;
  for (const auto& [k, v] : under) {
    env[k] = v;
  }
  for (const auto& [k, v] : n.worker().env) {
    env[k] = v;
  }
  env["OTPD_CHILD"] = n.path;
  if (!n.spec->name.empty()) {
    env["OTPD_NAME"] = n.spec->name;
  }
  if (notify) {
    // Not operator=("3"): g++ 12 -O2 sees a false -Wrestrict overlap in it here.
    env.insert_or_assign(core::ready_fd_env, std::string("3"));
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) {
    out.push_back(k + "=" + v);
  }
  return out;
}

}  // namespace otpd::supervisor::detail

// otpd, the node: one libuv loop that owns the supervision tree, spawns and
// reaps every child, runs readiness checks and stop sequences, captures
// output, and serves the control socket.
//
// Which unit holds what (all in supervisor/src/):
//   daemon.cpp            this file: set-up and tear-down, the loop, signals,
//                         running the tree's actions, the event log, stopping
//                         workers, the reaper, the name registry clean-up
//   node_daemon.hpp       the daemon's state (node_daemon, proc), shared by
//                         the units below
//   spawn_worker.cpp      a spawn action, step by step: argv and env, fds,
//                         spawn, bookkeeping, the exec outcome
//   readiness.cpp         when a worker is ready: exec, notify fd, tcp, unix,
//                         http and command probes, the start timeout
//   liveness.cpp          whether a running worker still answers: periodic
//                         probes, and the kill of one that does not
//   notify_children.cpp   sd_notify from children: READY=1, the watchdog,
//                         STATUS= (the socket and parser: notify_socket.cpp)
//   probe.cpp             the tcp / unix / http probes on the loop
//   control_handler.cpp   the control socket's command table and the rules of
//                         every request (error replies, audit), no daemon needed
//   control_commands.cpp  what each command does (the daemon's executor); its
//                         messages are otpd::protocol's (docs/PROTOCOL.md)
//   control_server.cpp    the control socket's transport: accept, framing,
//                         caps, backpressure, replies, the event stream
//   output_capture.cpp    child stdout/stderr into rotated log files
//   procfs.cpp            /proc helpers: descendants, parent pid, orphans
//   cgroup.cpp            containment: a cgroup v2 directory per worker
//                         (docs/CONTAINMENT.md), process groups without one
//   (libuv handles are owned through otpd::uv, uv/include/otpd/uv/handle.hpp)
#include <fcntl.h>
#include <linux/close_range.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "node_daemon.hpp"
#include "procfs.hpp"
#include <fmt/format.h>

#include <otpd/core/log.hpp>
#include <otpd/core/runtime_dir.hpp>
#include <otpd/protocol/layout.hpp>

namespace otpd::supervisor {

std::string control_socket_path(const std::string& runtime_dir) {
  return protocol::layout::control_socket(runtime_dir);
}

std::string pick_runtime_dir(const std::string& explicit_dir, const std::string& fallback) {
  if (!explicit_dir.empty()) {
    return explicit_dir;
  }
  if (const char* e = std::getenv("OTPD_RUNTIME_DIR"); e != nullptr && *e != '\0') {
    return e;
  }
  if (!fallback.empty()) {
    return fallback;
  }
  return core::default_runtime_dir();
}

namespace detail {

using core::exit_reason;

namespace {
// What stands at a runtime dir otpd refused, for its message: another user
// may have made it first (/tmp/otpd-<uid> is a predictable name).
std::string what_is_at(const std::string& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    return {};
  }
  if (S_ISLNK(st.st_mode)) {
    return " (it is a symbolic link, not followed)";
  }
  if (st.st_uid != ::geteuid()) {
    struct passwd* pw = ::getpwuid(st.st_uid);
    return fmt::format(" (it is owned by uid {}{}, not by otpd's user, uid {})", st.st_uid,
                       pw != nullptr ? fmt::format(" ({})", pw->pw_name) : std::string(),
                       ::geteuid());
  }
  return {};
}
}  // namespace

// ---- set-up and tear-down ----------------------------------------------------

bool node_daemon::setup() {
  // Whatever fds otpd inherited (beyond 0, 1, 2) are not for its children:
  // mark them close-on-exec, as everything otpd opens itself already is.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  // Started by otpctl reexec: the previous process's state, and the fds it
  // kept open for us (the lock, the capture pipes), which the line above
  // made close-on-exec again.
  if (opts_.reexec_state_fd >= 0 && !read_handover()) {
    return false;
  }
  // Before the children's environment is taken from ours: NOTIFY_SOCKET is
  // otpd's own (service_manager.hpp).
  sm_ = service_manager::from_environment();
  dir_ = pick_runtime_dir(opts_.runtime_dir, cfg_->node.runtime_dir);
  if (auto r = core::ensure_private_dir(dir_); !r) {
    core::log_error("otpd: unable to create runtime dir {}: {}{}; exiting", dir_,
                    r.error().message(), what_is_at(dir_));
    return false;
  }
  for (const std::string& sub :
       {protocol::layout::mailbox_dir(dir_), protocol::layout::names_dir(dir_)}) {
    if (auto r = core::ensure_private_dir(sub); !r) {
      core::log_error("otpd: unable to create {}: {}{}; exiting", sub, r.error().message(),
                      what_is_at(sub));
      return false;
    }
  }
  // One otpd per runtime dir: a second one would double every worker. The
  // lock dies with us, even by SIGKILL.
  // After a reexec the lock is the one the previous binary took: the same
  // open file, so taking it again succeeds (a new open of the file would not).
  std::string lock = protocol::layout::lock_file(dir_);
  if (handover_) {
    lock_fd_.reset(handover_->value("lock_fd", -1));
  } else {
    lock_fd_.reset(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  }
  if (!lock_fd_ || ::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    core::log_error("otpd: unable to lock {}: {}; is another otpd running on {}?", lock,
                    std::strerror(errno), dir_);
    return false;
  }
  // Orphaned grandchildren are re-parented to us, so we reap them (and can
  // sweep them); as PID 1 in a container this is the default anyway.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  core::raise_fd_limit();
  rebuild_base_env();

  uv_loop_init(&loop_);
  loop_.data = this;
  if (!setup_containment() || !setup_limits()) {
    return false;
  }
  install_signals();
  control_.set_limits(control_limits_of(*cfg_));
  if (!control_.listen(control_socket_path(dir_))) {
    return false;
  }
  tree_ = std::make_unique<tree>(cfg_, now_ms, static_cast<std::uint64_t>(::getpid()), wall_now_ms);
  start_service_manager();
  return true;
}

// ---- the service manager (sd_notify) -----------------------------------------

void node_daemon::start_service_manager() {
  if (!sm_.active()) {
    return;
  }
  // WATCHDOG=1 at half systemd's interval, as sd_watchdog_enabled(3) advises;
  // STATUS= at most once a second, not on every event of a crash loop.
  auto every = std::chrono::milliseconds(1000);
  if (auto w = sm_.watchdog()) {
    every =
        std::min(every, std::max(std::chrono::milliseconds(1),
                                 std::chrono::duration_cast<std::chrono::milliseconds>(*w / 2)));
  }
  core::log_info("otpd: notifying the service manager at {}{}", sm_.socket_path(),
                 sm_.watchdog() ? fmt::format(" (watchdog every {} ms)", every.count()) : "");
  sm_timer_ = uv::handle<uv_timer_t>::make();
  uv_timer_init(&loop_, sm_timer_.get());
  auto ms = static_cast<std::uint64_t>(every.count());
  uv_timer_start(
      sm_timer_.get(),
      [](uv_timer_t* t) {
        auto& d = self(t);
        if (d.sm_.watchdog()) {
          d.sm_.watchdog_ping();
        }
        d.sm_.status(d.status_line());
      },
      ms, ms);
}

// "3 of 4 children running" for `systemctl status`.
std::string node_daemon::status_line() const {
  std::size_t workers = 0;
  std::size_t running = 0;
  tree_->for_each([&](const node& n) {
    if (!n.is_supervisor) {
      ++workers;
      running += n.state == child_state::running ? 1 : 0;
    }
  });
  return fmt::format("{} of {} children running", running, workers);
}

// cgroup mode where a writable v2 hierarchy is found (or demanded), process
// groups otherwise; one log line says which. Under the runtime dir's lock:
// no other otpd uses these cgroups, so what is in them now a dead otpd left.
bool node_daemon::setup_containment() {
  if (opts_.containment == containment_choice::pgroup) {
    containment_ = containment_mode::pgroup;
    core::log_info("otpd: containment: pgroup (--containment pgroup)");
    return true;
  }
  auto root = cgroup_root::open(dir_);
  core::unique_fd in;
  if (root) {
    in.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  }
  if (!root || !in) {
    std::string why = !root ? root.message() : fmt::format("inotify: {}", std::strerror(errno));
    if (opts_.containment == containment_choice::cgroup) {
      core::log_error("otpd: unable to use cgroups: {}; exiting (--containment cgroup)", why);
      return false;
    }
    containment_ = containment_mode::pgroup;
    core::log_info("otpd: containment: pgroup (no cgroup: {})", why);
    return true;
  }
  cgroups_ = std::move(*root);
  containment_ = containment_mode::cgroup;
  core::log_info("otpd: containment: cgroup ({})", cgroups_->base());
  if (!cgroups_->moved_into().empty()) {
    core::log_info(
        "otpd: moved itself into {} so that controllers can be enabled for its children "
        "(cgroup v2 allows no process in a cgroup that does)",
        cgroups_->moved_into());
  }
  // After a reexec what is in the cgroups is ours, running: not leftovers.
  for (const auto& left :
       handover_ ? std::vector<cgroup_leftover>()
                 : cgroups_->clean_leftovers(core::deadline::after(std::chrono::seconds(5)))) {
    std::string pids;
    for (pid_t p : left.pids) {
      pids += (pids.empty() ? "" : " ") + std::to_string(p);
    }
    core::log_warn("otpd: killed what a previous otpd left in {}: pids {}", left.dir, pids);
  }
  cg_inotify_ = std::move(in);
  cg_poll_ = uv::handle<uv_poll_t>::make();
  if (uv_poll_init(&loop_, cg_poll_.get(), cg_inotify_.get()) != 0) {
    cg_poll_.discard();
    core::log_error("otpd: unable to watch cgroup events; exiting");
    return false;
  }
  uv_poll_start(cg_poll_.get(), UV_READABLE,
                [](uv_poll_t* h, int, int) { self(h).on_cgroup_events(); });
  return true;
}

void node_daemon::install_signals() {
  auto sig = [this](uv::handle<uv_signal_t>& h, int signum, uv_signal_cb cb) {
    h = uv::handle<uv_signal_t>::make();
    uv_signal_init(&loop_, h.get());
    uv_signal_start(h.get(), cb, signum);
  };
  sig(sig_chld_, SIGCHLD, [](uv_signal_t* h, int) { self(h).reap(); });
  auto stop_cb = [](uv_signal_t* h, int signum) {
    auto& d = self(h);
    core::log_info("otpd: {} received; stopping the node", core::signal_name(signum));
    d.tree_->shutdown();
    d.drain();
  };
  sig(sig_term_, SIGTERM, stop_cb);
  sig(sig_int_, SIGINT, stop_cb);
  // SIGHUP is the reload command without a connection, with the same
  // guard: a reload that fails (a config that does not load, an exception,
  // out of memory) leaves the running tree as it was and says why.
  sig(sig_hup_, SIGHUP, [](uv_signal_t* h, int) {
    auto& d = self(h);
    control_peer none;
    json ans = answer_control_request(d, none, R"({"cmd":"reload"})");
    if (!ans.is_object() || !protocol::is_ok(ans)) {
      core::log_error("otpd: reload refused: {}; the running tree is unchanged",
                      ans.is_object() ? ans.value("error", std::string()) : "out of memory");
    }
  });
  ::signal(SIGPIPE, SIG_IGN);
}

void node_daemon::teardown() {
  // Anything re-parented to us and still alive dies with the node; so does
  // anything still in a worker's cgroup (then the cgroups go).
  if (cgroups_) {
    for (const auto& [wd, e] : emptying_) {
      (void)cgroup_kill(e.cgroup);
    }
  }
  kill_own_children();
  if (cgroups_) {
    cgroups_->remove_all(core::deadline::after(std::chrono::seconds(5)));
  }
  if (limits_) {
    limits_->remove_all(core::deadline::after(std::chrono::seconds(5)));
  }
  emptying_.clear();
  cg_poll_.reset();
  output_.clear();
  control_.close_all();
  backoff_timers_.clear();
  spawn_retry_.clear();
  procs_.clear();
  sig_chld_.reset();
  sig_term_.reset();
  sig_int_.reset();
  sig_hup_.reset();
  sm_timer_.reset();
  notify_.reset();
  uv_run(&loop_, UV_RUN_NOWAIT);
  // A probe's host name may still be resolving in libuv's thread pool (its
  // request cannot always be cancelled): give it up to 2 s to come back and
  // free what it holds. The guard timer only bounds the wait: unreferenced,
  // it keeps nothing alive.
  if (uv_loop_alive(&loop_) != 0) {
    auto guard = uv::handle<uv_timer_t>::make();
    uv_timer_init(&loop_, guard.get());
    uv_timer_start(
        guard.get(), [](uv_timer_t*) {}, 2000, 0);
    uv_unref(uv::as_handle(guard.get()));
    std::int64_t until = now_ms() + 2000;
    while (uv_loop_alive(&loop_) != 0 && now_ms() < until) {
      uv_run(&loop_, UV_RUN_ONCE);
    }
    guard.reset();
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  if (uv_loop_close(&loop_) != 0) {
    // A probe's host name lookup still runs in libuv's thread pool (a slow
    // DNS server: getaddrinfo cannot be interrupted). Returning would free
    // the loop under it, and libuv's exit handler would wait for it: the
    // node is down and its children gone, so end the process here.
    core::log_warn("otpd: a probe's host name lookup is still running; exiting without it");
    std::fflush(nullptr);
    ::_exit(exit_code_ < 0 ? 1 : exit_code_);
  }
  ::unlink(control_socket_path(dir_).c_str());
}

int node_daemon::run() {
  if (!setup()) {
    return 1;
  }
  if (handover_) {
    adopt_handover();  // reexec.cpp: the tree as it was, nothing spawned
  } else {
    core::log_info("otpd: node {} running in {} (pid {})", cfg_->node.name, dir_, ::getpid());
    load_holds();
    tree_->start();
  }
  drain();
  while (exit_code_ < 0 && uv_run(&loop_, UV_RUN_ONCE) != 0) {
  }
  teardown();
  return exit_code_ < 0 ? 1 : exit_code_;
}

// ---- the tree's actions ------------------------------------------------------

// Runs the tree's actions until there are none. Actions may call back into
// the tree (a spawn with exec readiness is ready at once), which queues more.
void node_daemon::drain() {
  if (draining_) {
    return;
  }
  draining_ = true;
  // Within a batch, processes first and notifications after: a restart
  // does not wait for its "exited" and "restarting" events to be logged.
  // Events that the spawns cause land in the next batch, so the log keeps
  // its order.
  while (tree_->has_actions()) {
    auto batch = tree_->take_actions();
    for (auto& a : batch) {
      if (a.k == action::kind::spawn || a.k == action::kind::stop) {
        execute(a);
      }
    }
    for (auto& a : batch) {
      if (a.k != action::kind::spawn && a.k != action::kind::stop) {
        execute(a);
      }
    }
  }
  draining_ = false;
  if (tree_->stopping()) {
    sm_.stopping();
  }
  if (holds_dirty_) {
    save_holds();
  }
  // A reexec the control command accepted: its reply has been queued (the
  // control server runs drain after each request), the exec comes now.
  if (reexec_pending_) {
    reexec_pending_ = false;
    reexec_when_flushed();
  }
}

void node_daemon::execute(action& a) {
  switch (a.k) {
    case action::kind::spawn:
      spawn_worker(a.uid);
      return;
    case action::kind::stop:
      stop_worker(a.uid, a.brutal);
      return;
    case action::kind::schedule:
      schedule_timer(a.uid, a.delay_ms);
      return;
    case action::kind::notify:
      log_event(a.ev);
      return;
    case action::kind::exit_node:
      if (a.exit_code != 0) {
        core::log_error("otpd: {}; node stopped", a.ev.detail);
      } else {
        core::log_info("otpd: node {} stopped", cfg_->node.name);
      }
      exit_code_ = a.exit_code;
      uv_stop(&loop_);
      return;
  }
}

// A restart delay of the tree: tree::on_timer(uid) after delay_ms.
void node_daemon::schedule_timer(std::uint64_t uid, int delay_ms) {
  auto t = uv::handle<uv_timer_t>::make();
  uv_timer_init(&loop_, t.get());
  t.get()->data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(uid));
  uv_timer_start(
      t.get(),
      [](uv_timer_t* h) {
        auto& d = self(h);
        auto uid = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(h->data));
        d.tree_->on_timer(uid);
        d.drain();
        d.backoff_timers_.erase(uid);  // closes this timer after the callback
      },
      static_cast<std::uint64_t>(delay_ms), 0);
  backoff_timers_[uid] = std::move(t);
}

void node_daemon::log_event(const event& ev) {
  protocol::lifecycle_event e;
  e.event = ev.type;
  e.path = ev.path;
  e.ts_ms = now_ms();
  if (ev.pid > 0) {
    e.pid = ev.pid;
  }
  if (ev.has_reason) {
    e.reason = ev.reason;
  }
  if (!ev.detail.empty()) {
    e.detail = ev.detail;
  }
  std::string line;
  if (opts_.format != log_format::json) {
    line = fmt::format("{} {}", ev.path, ev.type);
    if (ev.pid > 0) {
      line += fmt::format(" pid {}", ev.pid);
    }
    if (ev.has_reason) {
      line += ": " + ev.reason.to_string();
    }
    if (!ev.detail.empty()) {
      line += " (" + ev.detail + ")";
    }
  }
  if (ev.type == "supervisor_started") {
    holds_dirty_ = true;  // a restarted supervisor starts its held children again
    if (ev.path == "/") {
      sm_.ready(status_line());
    }
  }
  auto level =
      ev.type == "intensity_exceeded" || ev.type == "start_failed" || ev.type == "liveness_failed"
          ? core::log_level::error
      : ev.type == "probe_failed" ? core::log_level::warn
                                  : core::log_level::info;
  record_event(std::move(e), level, line);
}

// An event into the log (as a JSON line at info, or as text at level), the
// recent ring and the event stream.
void node_daemon::record_event(protocol::lifecycle_event e, core::log_level level,
                               const std::string& text) {
  if (e.time.empty()) {
    e.time = core::rfc3339_utc(core::wall_ms());
  }
  json j = e.to_json();
  if (opts_.format == log_format::json) {
    core::log_info("{}", protocol::dump_json(j));
  } else {
    core::log(level, "{}", text);
  }
  recent_events_.push_back(std::move(e));
  if (recent_events_.size() > recent_events_size) {
    recent_events_.pop_front();
  }
  control_.broadcast(j);
}

// ---- stopping ----------------------------------------------------------------

void node_daemon::stop_worker(std::uint64_t uid, bool brutal) {
  if (spawn_retry_.erase(uid) != 0) {
    // Never spawned (out of fds): stopped before it started.
    tree_->on_exit(uid, brutal ? exit_reason::from_signal(SIGKILL)
                               : exit_reason{core::exit_kind::shutdown, 0});
    return;
  }
  auto w = worker_pid_.find(uid);
  if (w == worker_pid_.end()) {
    return;  // never spawned or already reaped: the tree has been told
  }
  proc& p = procs_[w->second];
  node* n = tree_->find(uid);
  if (n == nullptr) {
    return;
  }
  if (p.stopping) {
    if (brutal && !p.stop_killed && !p.liveness_killed) {
      // Its supervisor was killed during an orderly stop: no more waiting.
      p.timer.reset();
      p.stop_killed = true;
      kill_everything_of(p);
    }
    return;
  }
  p.stopping = true;
  p.stop_readiness_watch();
  end_liveness(p);
  if (p.liveness_killed) {
    return;  // already being killed (liveness.cpp): that kill ends it
  }
  if (containment_ == containment_mode::pgroup) {
    // Remember the whole family now: descendants that left the process
    // group are killed through these when the child is reaped.
    collect_family(p);
  }
  const shutdown_spec& s = n->worker().shutdown;
  p.group_finishes = !p.cgroup.empty() && n->worker().stop_as_group;
  if (brutal || s.kind == shutdown_kind::brutal_kill) {
    p.stop_killed = true;
    kill_everything_of(p);
    return;
  }
  // stop_as_group: the helpers in the child's group get the signal too, and
  // a chance to stop cleanly before the SIGKILL at the end.
  ::kill(n->worker().stop_as_group ? -p.pid : p.pid, s.signal);
  if (s.kind == shutdown_kind::infinity) {
    return;
  }
  arm_pid_timer<&node_daemon::on_shutdown_timeout>(p.timer, p.pid,
                                                   static_cast<std::uint64_t>(s.timeout_ms), 0);
}

void node_daemon::on_shutdown_timeout(pid_t pid) {
  auto it = procs_.find(pid);
  if (it != procs_.end()) {
    core::log_warn("otpd {}: pid {} still running after its shutdown timeout; SIGKILL",
                   it->second.path, pid);
    it->second.stop_killed = true;
    kill_everything_of(it->second);
  }
}

// SIGKILL to all a worker runs: its cgroup at once (cgroup.kill), or its
// process group. The group too in cgroup mode: should cgroup.kill fail, the
// worker and its group still die.
void node_daemon::kill_everything_of(const proc& p) {
  if (!p.cgroup.empty()) {
    (void)cgroup_kill(p.cgroup);
    killed_cgroups_.insert(p.cgroup);
  }
  ::kill(-p.pid, SIGKILL);
}

// ---- reaping -----------------------------------------------------------------

// The one reaper. Every child of otpd (workers, readiness probes, orphans
// re-parented to us as subreaper) ends up here, so nobody else can steal a
// worker's status. WNOWAIT first: while the dead leader is a zombie its pid
// still pins the process group id, so killing the group cannot hit a reused pid.

void node_daemon::reap() {
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
      break;
    }
    pid_t pid = info.si_pid;
    auto it = procs_.find(pid);
    if (it != procs_.end() && it->second.r == proc::role::worker &&
        !(it->second.group_finishes && !it->second.stop_killed)) {
      ::kill(-pid, SIGKILL);  // grandchildren die with the child's process group
    }
    int status = 0;
    pid_t got;
    do {
      got = ::waitpid(pid, &status, WNOHANG);
    } while (got < 0 && errno == EINTR);
    if (got != pid) {
      break;
    }
    if (it == procs_.end()) {
      core::log_debug("otpd: reaped orphan {}", pid);
      continue;
    }
    on_reaped(pid, exit_reason::from_wait_status(status));
  }
  drain();
}

void node_daemon::on_reaped(pid_t pid, const exit_reason& observed) {
  auto it = procs_.find(pid);
  // The child wrote its exec errno before exiting; the reaper may run
  // before the exec fd's watch: read the outcome now, so a failed exec is
  // reported as such and not as exit code 127.
  if (it->second.r == proc::role::worker) {
    on_exec_outcome(it->second);
  }
  proc p = std::move(it->second);
  procs_.erase(it);
  if (p.r == proc::role::probe) {
    on_probe_reaped(p, observed);
    return;
  }
  worker_pid_.erase(p.uid);
  if (p.probe_pid > 0) {
    ::kill(p.probe_pid, SIGKILL);
  }
  end_liveness(p);
  sweep_descendants(p);
  // One reason for the tree (events, status), the exit-reason ring and the
  // monitors: they must agree.
  exit_reason reason = oom_reason(p, reason_of(p, observed));
  // The replacement first (restart latency), the bookkeeping after: the
  // clean-up only touches entries of the dead pid, never the new one's. In
  // cgroup mode the worker has ended only once its cgroup is empty: the
  // tree hears of it then (usually at once: nothing else was in it).
  if (!wait_until_empty(p, pid, reason)) {
    finish_exit(p.uid, p.cgroup, p.v1(), reason);
  }
  cleanup_registry(pid, p.name);
  exits_.emplace_back(pid, reason);
  if (exits_.size() > exit_ring_size) {
    exits_.pop_front();
  }
  notify_monitors(pid, reason);
}

// The reason a worker ended with, in OTP's terms. A failed start keeps why it
// failed. A stop its supervisor or an operator ordered ends in `shutdown`
// when the child went after the stop signal (whatever its status: most
// programs die of the signal or exit 0 or 143 on it), in `killed` when otpd
// had to SIGKILL it (brutal_kill, or the shutdown timeout ran out) or it
// died of SIGKILL anyway (`signal: KILL`, an operator's kill -9), as an OTP
// supervisor's exit(Pid, shutdown) / exit(Pid, kill). A core dump during the
// stop is a crash and keeps its reason. Anything else keeps what waitid saw.
exit_reason node_daemon::reason_of(const proc& p, const exit_reason& observed) {
  if (p.start_failed) {
    return p.fail_reason;
  }
  if (p.liveness_killed) {
    // otpd ended it for failing its liveness probe: never `shutdown`, even
    // when an ordered stop came during the kill, nor the signal it died of.
    return {core::exit_kind::liveness_failed, p.liveness_signal};
  }
  if (!p.stopping || observed.kind == core::exit_kind::core_dump) {
    return observed;
  }
  if (p.stop_killed || observed.kind == core::exit_kind::killed) {
    return exit_reason::from_signal(SIGKILL);
  }
  return {core::exit_kind::shutdown, 0};
}

// A readiness command that exited 0 makes its worker ready.
void node_daemon::on_probe_reaped(const proc& probe, const exit_reason& observed) {
  if (probe.liveness) {
    on_liveness_command_reaped(probe, observed);
    return;
  }
  auto w = procs_.find(worker_pid_.count(probe.uid) != 0 ? worker_pid_[probe.uid] : -1);
  if (w == procs_.end()) {
    return;
  }
  w->second.probe_pid = -1;
  if (observed.kind == core::exit_kind::normal && !w->second.ready && !w->second.stopping &&
      !w->second.start_failed) {
    worker_ready(w->second);
  }
}

// The worker's process is gone: tell the tree (which may restart it into
// the same cgroup), and remove the cgroup of a child the tree let go.
void node_daemon::finish_exit(std::uint64_t uid, const std::string& cgroup, const v1_dirs& v1,
                              const exit_reason& reason) {
  tree_->on_exit(uid, reason);
  drain();
  if (tree_->find(uid) == nullptr) {
    // A finished dynamic child: its cgroups go with it.
    if (!cgroup.empty()) {
      ::rmdir(cgroup.c_str());
    }
    limit_controllers::remove(v1);
  }
}

// cgroup mode: when the reaped worker left processes in its cgroup, kills
// them (cgroup.kill) and defers the exit until cgroup.events says
// "populated 0" (on_cgroup_events). Returns false when it is empty already.
// A stop with stop_as_group is the exception: the helpers were sent the stop
// signal too, so they get the rest of the shutdown timeout to exit on their
// own (systemd's KillMode=control-group), then cgroup.kill. A crash, or a
// stop without stop_as_group (the helpers were never told: KillMode=mixed),
// kills them at once, which keeps restarts fast.
bool node_daemon::wait_until_empty(const proc& p, pid_t pid, const exit_reason& reason) {
  if (p.cgroup.empty() || !cgroup_populated(p.cgroup)) {
    return false;
  }
  bool let_finish = p.group_finishes && !p.stop_killed;
  if (!let_finish) {
    (void)cgroup_kill(p.cgroup);
    killed_cgroups_.insert(p.cgroup);
  }
  // The watch first, then the check: an emptying between them still wakes us.
  int wd = ::inotify_add_watch(cg_inotify_.get(), (p.cgroup + "/cgroup.events").c_str(), IN_MODIFY);
  if (wd < 0) {
    core::log_warn("otpd {}: unable to watch {}: {}; not waiting for it to empty", p.path, p.cgroup,
                   std::strerror(errno));
    if (let_finish) {
      (void)cgroup_kill(p.cgroup);  // nothing would end the wait: no helper outlives the stop
      killed_cgroups_.insert(p.cgroup);
    }
    return false;
  }
  if (!cgroup_populated(p.cgroup)) {
    ::inotify_rm_watch(cg_inotify_.get(), wd);
    return false;
  }
  core::log_debug("otpd {}: pid {} gone; waiting for {} to empty", p.path, pid, p.cgroup);
  emptying& e = emptying_[wd];
  e = emptying{p.uid, p.path, p.cgroup, p.v1(), reason, {}};
  // The shutdown timer of the stop (none with shutdown: infinity) goes on
  // for what is left: its remaining time, on a timer of the cgroup's own.
  if (let_finish && p.timer.get() != nullptr && uv_is_active(uv::as_handle(p.timer.get())) != 0) {
    e.timer = uv::handle<uv_timer_t>::make();
    uv_timer_init(&loop_, e.timer.get());
    e.timer.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(wd));
    uv_timer_start(
        e.timer.get(),
        [](uv_timer_t* h) {
          self(h).on_group_timeout(static_cast<int>(reinterpret_cast<std::intptr_t>(h->data)));
        },
        uv_timer_get_due_in(p.timer.get()), 0);
  }
  return true;
}

// The shutdown timeout ran out with processes still in a stopped worker's
// cgroup: they are killed; the exit follows when it is empty.
void node_daemon::on_group_timeout(int wd) {
  auto it = emptying_.find(wd);
  if (it == emptying_.end()) {
    return;
  }
  core::log_warn("otpd {}: {} still holds processes after the shutdown timeout; killing them",
                 it->second.path, it->second.cgroup);
  (void)cgroup_kill(it->second.cgroup);
  killed_cgroups_.insert(it->second.cgroup);
}

void node_daemon::on_cgroup_events() {
  alignas(inotify_event) char buf[4096];
  ssize_t n;
  while ((n = ::read(cg_inotify_.get(), buf, sizeof buf)) > 0) {
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      auto it = emptying_.find(ev->wd);
      if (it == emptying_.end() || cgroup_populated(it->second.cgroup)) {
        continue;
      }
      emptying e = std::move(it->second);
      emptying_.erase(it);
      ::inotify_rm_watch(cg_inotify_.get(), ev->wd);
      finish_exit(e.uid, e.cgroup, e.v1, e.reason);
    }
  }
}

// pgroup mode: the descendants of the worker as pidfds. A pid read from
// /proc may be reused before pidfd_open; so after it, the process must
// still descend from the worker (the pidfd pins it: no reuse from then on).
void node_daemon::collect_family(proc& p) {
  constexpr std::size_t max_family = 1024;
  std::vector<pid_t> found;
  collect_descendants(p.pid, found);
  for (pid_t d : found) {
    if (p.family.size() >= max_family) {
      break;
    }
    auto fd = core::pidfd_open(d);
    if (!fd) {
      continue;
    }
    pid_t up = d;
    for (int depth = 0; depth < 64 && up > 1 && up != p.pid; ++depth) {
      up = parent_of(up);
    }
    if (up == p.pid) {
      p.family.push_back(std::move(*fd));
    }
  }
}

// pgroup mode: what the worker had when its stop began dies with it, also
// what left its process group (setsid, double forks).
void node_daemon::sweep_descendants(proc& p) {
  for (const auto& fd : p.family) {
    ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
  }
  p.family.clear();
}

// A "down" event to every connection monitoring pid, once.
void node_daemon::notify_monitors(pid_t pid, const exit_reason& observed) {
  auto m = monitors_.find(pid);
  if (m == monitors_.end()) {
    return;
  }
  json down = protocol::down_event{pid, observed}.to_json();
  for (auto id : m->second) {
    if (control_peer* p = control_.peer(id); p != nullptr && p->monitors > 0) {
      --p->monitors;  // idle again once nothing is monitored (control_server's sweep)
    }
    control_.send_to(id, down);
  }
  monitors_.erase(m);
}

// ---- the name registry -------------------------------------------------------

// A SIGKILLed process cannot remove its mailbox or its name: we do.
void node_daemon::cleanup_registry(pid_t pid, const std::string& name) {
  std::string mbox = protocol::layout::mailbox_socket(dir_, pid);
  ::unlink(mbox.c_str());
  if (name.empty()) {
    return;
  }
  std::string link = protocol::layout::name_link(dir_, name);
  char buf[256];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = '\0';
    if (std::string(buf) == protocol::layout::name_target(pid)) {
      ::unlink(link.c_str());
    }
  }
}

pid_t node_daemon::pid_of_name(const std::string& name) const {
  if (name.empty() || name.find('/') != std::string::npos) {
    return -1;
  }
  char buf[256];
  ssize_t n = ::readlink(protocol::layout::name_link(dir_, name).c_str(), buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = '\0';
    std::string s(buf);
    auto slash = s.rfind('/');
    pid_t pid = std::atoi(s.c_str() + (slash == std::string::npos ? 0 : slash + 1));
    if (pid > 0) {
      return pid;
    }
  }
  // A named worker that has not registered its mailbox yet: its pid.
  pid_t found = -1;
  tree_->for_each([&](const node& nd) {
    if (!nd.is_supervisor && nd.spec->name == name && nd.pid > 0) {
      found = nd.pid;
    }
  });
  return found;
}

}  // namespace detail

int run_daemon(const daemon_options& options) {
  auto cfg = load_config(options.config_path);
  if (!cfg) {
    core::log_error("{}", cfg.message());
    return 1;
  }
  // A journal or syslog that cannot be reached now is an error at start
  // (--check only warns): output would be lost from the first line on.
  if (auto bad = unreachable_log_targets(**cfg); !bad.empty()) {
    for (const auto& why : bad) {
      core::log_error("otpd: {}: {}; not starting", options.config_path, why);
    }
    return 1;
  }
  if ((*cfg)->node.log_target != log_target_kind::stderr_stream) {
    bool journal = (*cfg)->node.log_target == log_target_kind::journald;
    auto set =
        core::set_log_target(journal ? core::log_target::journald : core::log_target::syslog);
    if (!set) {
      core::log_error("otpd: unable to log to {}: {}; not starting",
                      journal ? "journald" : "syslog", set.message());
      return 1;
    }
  }
  // Parsing a big config leaves megabytes of freed yaml-cpp nodes in the
  // heap; give them back, or every fork copies their page tables.
  ::malloc_trim(0);
  detail::node_daemon d(options, *cfg);
  return d.run();
}

}  // namespace otpd::supervisor

// otpctl reexec: otpd execs its (new) binary in its own process, so every
// worker stays its child and none restarts (systemd's daemon-reexec).
//
// The old process: the command checks that the handover can be exact (an
// executable binary, the config on disk the running one, nothing starting,
// stopping or emptying, and the binary answering `--reexec-probe` with the
// state version written here), replies, then (after the reply is written: drain()
// runs it) writes the node's state as JSON into a memfd and execs the binary
// with its own arguments plus --reexec-state FD. Only the fds the new
// process needs lose FD_CLOEXEC, right before the execve: the runtime dir's
// lock, the memfd, the capture pipes. Should the execve fail, all of that is
// undone and the old process goes on as before.
//
// The new process: setup() reads the state (read_handover), keeps the lock
// it was given, finds its cgroups again without killing what is in them,
// builds the tree from the config, then adopt_handover(): the tree takes the
// state over (tree::adopt: nothing spawned), the workers are registered
// again with what the daemon knew of them (readiness, cgroup, limits, the
// OOM baseline), liveness probes re-armed, the capture pipes watched again,
// and the reaper runs at once: a worker that died during the exec is a
// plain exit, restarted by its strategy.
//
// Not handed over: control connections (they close with the exec; clients
// connect again: `otpctl events -f` does), monitors (their callers monitor
// again), probes under way (re-armed from scratch). docs/ARCHITECTURE.md.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "node_daemon.hpp"
#include <fmt/format.h>

#include <otpd/core/log.hpp>
#include <otpd/core/pipe.hpp>
#include <otpd/core/spawn.hpp>

extern char** environ;

namespace otpd::supervisor::detail {

namespace proto = otpd::protocol;
using core::exit_reason;

namespace {

constexpr int state_version = reexec_state_version;
// How long the binary may take to answer --reexec-probe (the loop waits).
constexpr auto probe_wait = std::chrono::seconds(5);
// A state larger than this is not ours (10,000 children take a few MB).
constexpr std::size_t max_state_bytes = 256u << 20;
// How long the exec waits for the command's reply to be written.
constexpr std::int64_t flush_wait_ms = 1000;

// A refused reexec's answer.
json refuse(const std::string& message) {
  return proto::error_reply{message}.to_json();
}

json reason_json(const exit_reason& r) {
  return json::array({static_cast<int>(r.kind), r.value});
}

exit_reason reason_of_json(const json& j) {
  return exit_reason::from_codes(j.at(0).get<int>(), j.at(1).get<int>());
}

json snapshot_json(const node_snapshot& s) {
  json j = {{"path", s.path},
            {"id", s.id},
            {"sup", s.is_supervisor},
            {"state", static_cast<int>(s.state)},
            {"pid", s.pid},
            {"restarts", s.restarts},
            {"ever_started", s.ever_started},
            {"has_exit", s.has_exit},
            {"last_exit", reason_json(s.last_exit)},
            {"started_at_ms", s.started_at_ms},
            {"dropped", s.dropped},
            {"held", s.held},
            {"dynamic", s.dynamic},
            {"extra_args", s.extra_args},
            {"backoff_pending", s.backoff_pending},
            {"backoff_attempt", s.backoff_attempt},
            {"next_start_ms", s.next_start_ms}};
  json exits = json::array();
  for (const auto& e : s.last_exits) {
    exits.push_back({e.wall_ms, reason_json(e.reason)});
  }
  j["last_exits"] = std::move(exits);
  if (s.is_supervisor) {
    j["phase"] = static_cast<int>(s.phase);
    j["restart_log"] = s.restart_log;
    j["dynamic_counter"] = s.dynamic_counter;
    j["give_up_cause"] = s.give_up_cause;
  }
  return j;
}

node_snapshot snapshot_of_json(const json& j) {
  node_snapshot s;
  s.path = j.at("path").get<std::string>();
  s.id = j.at("id").get<std::string>();
  s.is_supervisor = j.at("sup").get<bool>();
  int state = j.at("state").get<int>();
  s.state = state >= 0 && state <= static_cast<int>(child_state::backoff)
                ? static_cast<child_state>(state)
                : child_state::stopped;
  s.pid = j.at("pid").get<pid_t>();
  s.restarts = j.at("restarts").get<int>();
  s.ever_started = j.at("ever_started").get<bool>();
  s.has_exit = j.at("has_exit").get<bool>();
  s.last_exit = reason_of_json(j.at("last_exit"));
  s.started_at_ms = j.at("started_at_ms").get<std::int64_t>();
  s.dropped = j.at("dropped").get<bool>();
  s.held = j.at("held").get<bool>();
  s.dynamic = j.at("dynamic").get<bool>();
  s.extra_args = j.at("extra_args").get<std::vector<std::string>>();
  s.backoff_pending = j.at("backoff_pending").get<bool>();
  s.backoff_attempt = j.at("backoff_attempt").get<int>();
  s.next_start_ms = j.at("next_start_ms").get<std::int64_t>();
  for (const auto& e : j.at("last_exits")) {
    s.last_exits.push_back({e.at(0).get<std::int64_t>(), reason_of_json(e.at(1))});
  }
  if (s.is_supervisor) {
    int phase = j.at("phase").get<int>();
    s.phase = phase >= 0 && phase <= static_cast<int>(sup_phase::killed)
                  ? static_cast<sup_phase>(phase)
                  : sup_phase::idle;
    s.restart_log = j.at("restart_log").get<std::vector<std::int64_t>>();
    s.dynamic_counter = j.at("dynamic_counter").get<std::uint64_t>();
    s.give_up_cause = j.at("give_up_cause").get<std::string>();
  }
  return s;
}

json output_spec_json(const output_spec& o) {
  return {{"kind", static_cast<int>(o.kind)},
          {"path", o.path},
          {"max_bytes", o.max_bytes},
          {"keep", o.keep},
          {"rotate", o.rotate},
          {"timestamps", o.timestamps}};
}

output_spec output_spec_of_json(const json& j) {
  output_spec o;
  o.kind = static_cast<output_kind>(j.at("kind").get<int>());
  o.path = j.at("path").get<std::string>();
  o.max_bytes = j.at("max_bytes").get<std::uint64_t>();
  o.keep = j.at("keep").get<int>();
  o.rotate = j.at("rotate").get<bool>();
  o.timestamps = j.at("timestamps").get<bool>();
  return o;
}

bool set_cloexec(int fd, bool on) {
  int fl = ::fcntl(fd, F_GETFD);
  if (fl < 0) {
    return false;
  }
  return ::fcntl(fd, F_SETFD, on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC)) == 0;
}

// All of text into fd; false (errno set) when it cannot.
bool write_all(int fd, const std::string& text) {
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// The signals whose handlers the exec resets: blocked across it, so one
// that comes in the window stays pending for the new process's handlers
// instead of taking the default action (SIGTERM would end otpd).
sigset_t exec_window_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) {
    sigaddset(&set, sig);
  }
  return set;
}

// Asks binary whether it can take the state over: `BINARY CONFIG
// --reexec-probe` loads the config and prints the state version it reads.
// An older otpd, another program, a binary that does not start, or a config
// the new binary rejects are refused here, before anything is handed over.
// "" when it can.
std::string probe_binary(const std::string& binary, const std::string& config) {
  auto out = core::make_pipe();
  auto err = core::make_pipe();
  if (!out || !err) {
    return fmt::format("unable to ask {}: pipe: {}", binary, (!out ? out : err).error().message());
  }
  core::spawn_options o;
  o.argv = {binary, config, "--reexec-probe"};
  o.search_path = false;
  o.fds = {{-1, 0}, {out->write.get(), 1}, {err->write.get(), 2}};
  auto child = core::spawn(o);
  out->write.reset();
  err->write.reset();
  if (!child) {
    return fmt::format("{}: {}: not an executable file", binary, child.error().message());
  }
  std::string text[2];
  auto until = core::deadline::after(probe_wait);
  pollfd fds[2] = {{out->read.get(), POLLIN, 0}, {err->read.get(), POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0 && !until.expired()) {
    if (::poll(fds, 2, until.poll_timeout_ms()) <= 0) {
      continue;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0 && text[i].size() < 65536) {
        text[i].append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  auto end = core::kill_and_reap(
      child->pid, SIGKILL, core::deadline::after(std::chrono::seconds(1)), child->pidfd.get());
  (void)end;
  std::string want = fmt::format("otpd reexec-state {}\n", state_version);
  if (text[0] == want) {
    return {};
  }
  std::string why = text[1];
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
    why.pop_back();
  }
  if (open_fds > 0) {
    why = fmt::format("no answer within {} s", probe_wait.count());
  }
  if (why.empty()) {
    why = text[0].rfind("otpd reexec-state ", 0) == 0 ? "it reads another state format"
                                                      : "not an otpd that can take the state over";
  }
  return fmt::format("{}: {}", binary, why);
}

}  // namespace

// ---- the old process -----------------------------------------------------------

// Why the node cannot be handed over exactly now; "" when it can.
std::string node_daemon::reexec_refusal() const {
  if (exit_code_ >= 0) {
    return "busy: the node is stopping";
  }
  if (std::string why = tree_->busy(); !why.empty()) {
    return why;
  }
  if (!emptying_.empty()) {
    return fmt::format("busy: the cgroup of {} is still emptying; try again",
                       emptying_.begin()->second.path);
  }
  if (!spawn_retry_.empty()) {
    node* n = tree_->find(spawn_retry_.begin()->first);
    return fmt::format("busy: {} waits for file descriptors to start; try again",
                       n != nullptr ? n->path : std::string("a child"));
  }
  for (const auto& [pid, p] : procs_) {
    if (p.r != proc::role::worker) {
      continue;
    }
    if (p.stopping || p.liveness_killed) {
      return fmt::format("busy: {} is stopping; try again", p.path);
    }
    if (!p.ready || p.start_failed) {
      return fmt::format("busy: {} is starting; try again", p.path);
    }
  }
  return {};
}

json node_daemon::reexec(control_peer& p, const proto::reexec_request& r) {
  if (reexec_pending_ || reexec_timer_) {
    return refuse("a reexec is under way");
  }
  std::string binary = r.binary.empty() ? opts_.binary : r.binary;
  if (binary.empty()) {
    return refuse(
        "the path otpd was started from is unknown: give the binary (otpctl reexec --binary)");
  }
  if (binary.front() != '/') {
    return refuse(fmt::format("{}: not an absolute path", binary));
  }
  struct stat st {};
  if (::stat(binary.c_str(), &st) != 0) {
    return refuse(fmt::format("{}: {}: not an executable file", binary, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode) || ::access(binary.c_str(), X_OK) != 0) {
    return refuse(fmt::format("{}: not an executable file", binary));
  }
  // The new process loads the config from disk: it must be the one running,
  // or the handover would not be exact.
  auto cfg = load_config(opts_.config_path);
  if (!cfg) {
    return refuse(fmt::format("the config on disk does not load: {}", cfg.message()));
  }
  auto plan = tree_->plan_reload(**cfg);
  if (!plan.added.empty() || !plan.removed.empty() || !plan.changed.empty()) {
    return refuse("config changed on disk: run otpctl reload first");
  }
  if (std::string why = reexec_refusal(); !why.empty()) {
    return refuse(why);
  }
  if (std::string why = probe_binary(binary, opts_.config_path); !why.empty()) {
    return refuse(why);
  }
  reexec_binary_ = binary;
  reexec_peer_ = p.id;
  reexec_pending_ = true;  // drain() runs it once this reply is queued
  return proto::reexec_reply{binary, ::getpid()}.to_json();
}

// The reply is usually written at once; a client that does not read it gets
// up to flush_wait_ms, then the exec closes its connection anyway. Other
// connections are not waited for (an event follower that lags loses its
// last events, as it would at any exit of otpd).
void node_daemon::reexec_when_flushed() {
  if (control_.queued_for(reexec_peer_) == 0) {
    run_reexec();
    return;
  }
  reexec_deadline_ms_ = now_ms() + flush_wait_ms;
  reexec_timer_ = uv::handle<uv_timer_t>::make();
  uv_timer_init(&loop_, reexec_timer_.get());
  uv_timer_start(
      reexec_timer_.get(),
      [](uv_timer_t* t) {
        auto& d = self(t);
        if (d.control_.queued_for(d.reexec_peer_) != 0 && now_ms() < d.reexec_deadline_ms_) {
          return;
        }
        uv_timer_stop(t);
        d.run_reexec();
        d.reexec_timer_.reset();  // closed after this callback
      },
      5, 5);
}

json node_daemon::handover_state(const std::vector<output_capture::handed>& captures) const {
  json h;
  h["version"] = state_version;
  h["binary"] = reexec_binary_;
  h["reexecs"] = reexecs_ + 1;
  h["lock_fd"] = lock_fd_.get();
  h["containment"] = to_string(containment_);
  json nodes = json::array();
  for (const auto& s : tree_->snapshot()) {
    nodes.push_back(snapshot_json(s));
  }
  h["tree"] = std::move(nodes);
  json procs = json::array();
  for (const auto& [pid, p] : procs_) {
    if (p.r != proc::role::worker) {
      continue;  // a liveness command under way: reaped as an orphan there
    }
    json j = {{"pid", pid},
              {"path", p.path},
              {"ready", p.ready},
              {"cgroup", p.cgroup},
              {"v1", {p.v1().memory, p.v1().pids, p.v1().cpu, p.v1().cpuacct}}};
    if (p.oom_kills) {
      j["oom_kills"] = *p.oom_kills;
    }
    // sd_notify from the child: its watchdog (a WATCHDOG_USEC= may have
    // changed it) and what it said.
    j["watchdog_usec"] = p.watchdog_usec;
    if (!p.notify_status.empty()) {
      j["notify_status"] = p.notify_status;
    }
    if (p.notify_errno) {
      j["notify_errno"] = *p.notify_errno;
    }
    procs.push_back(std::move(j));
  }
  h["procs"] = std::move(procs);
  if (notify_) {
    // The children's NOTIFY_SOCKET: the same socket goes on.
    h["notify"] = {{"fd", notify_->fd()}, {"address", notify_->address()}};
  }
  json caps = json::array();
  for (const auto& c : captures) {
    const capture_target& t = *c.target;
    json j = {{"fd", c.fd},       {"out_fd", t.out_fd},         {"prefix", t.prefix},
              {"ident", t.ident}, {"syslog_pri", t.syslog_pri}, {"timestamps", t.timestamps}};
    if (t.file) {
      j["file"] = output_spec_json(t.file->spec);
    }
    caps.push_back(std::move(j));
  }
  h["captures"] = std::move(caps);
  json exits = json::array();
  for (const auto& [pid, reason] : exits_) {
    exits.push_back({pid, reason_json(reason)});
  }
  h["exits"] = std::move(exits);
  json events = json::array();
  for (const auto& e : recent_events_) {
    events.push_back(e.to_json());
  }
  h["events"] = std::move(events);
  h["killed_cgroups"] = std::vector<std::string>(killed_cgroups_.begin(), killed_cgroups_.end());
  h["saved_holds"] = saved_holds_;
  return h;
}

// The exec. Everything from the last check to the execve runs in this one
// call: no loop turn in between, so nothing can start or die unseen (a
// child that dies now is a zombie the new process reaps).
void node_daemon::run_reexec() {
  const std::string binary = reexec_binary_;
  auto abandon = [&](const std::string& why) {
    core::log_error("otpd: reexec of {} abandoned: {}; still running the old binary", binary, why);
    log_event({"reexec_failed", "/", -1, false, {}, why});
    sm_.ready(status_line());
  };
  if (std::string why = reexec_refusal(); !why.empty()) {
    abandon(why);  // something began between the reply and now
    return;
  }
  // Followers learn that their stream ends here and why (they reconnect);
  // the event goes into the handed-over ring too, so they can tell what
  // they have seen from what came after.
  log_event({"reexec", "/", ::getpid(), false, {}, "exec " + binary});
  auto captures = output_.handover();
  std::string text;
  try {
    text = protocol::dump_json(handover_state(captures));
  } catch (const std::exception& e) {
    abandon(fmt::format("unable to write the state: {}", e.what()));
    return;
  }
  core::unique_fd memfd(::memfd_create("otpd-reexec-state", MFD_CLOEXEC));
  if (!memfd || !write_all(memfd.get(), text) || ::lseek(memfd.get(), 0, SEEK_SET) != 0) {
    abandon(fmt::format("unable to write the state to a memfd: {}", std::strerror(errno)));
    return;
  }
  std::vector<std::string> args = opts_.argv;
  if (args.empty()) {
    args.push_back(binary);
  }
  args.push_back("--reexec-state");
  args.push_back(std::to_string(memfd.get()));
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  // The service manager's variables were taken out of our environment at
  // start (service_manager.hpp): the new process needs them back.
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) {
    env_text.emplace_back(*e);
  }
  if (sm_.active()) {
    env_text.push_back("NOTIFY_SOCKET=" + sm_.socket_path());
    if (auto w = sm_.watchdog()) {
      env_text.push_back(fmt::format("WATCHDOG_USEC={}", w->count()));
      env_text.push_back(fmt::format("WATCHDOG_PID={}", ::getpid()));
    }
  }
  std::vector<char*> envp;
  for (auto& e : env_text) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);

  core::log_info("otpd: re-executing {} (pid {}, {} bytes of state, {} capture pipes)", binary,
                 ::getpid(), text.size(), captures.size());
  sm_.reloading();
  std::vector<int> keep = {lock_fd_.get(), memfd.get()};
  if (notify_) {
    keep.push_back(notify_->fd());
  }
  for (const auto& c : captures) {
    keep.push_back(c.fd);
  }
  for (int fd : keep) {
    (void)set_cloexec(fd, false);
  }
  sigset_t block = exec_window_signals();
  sigset_t old;
  ::sigprocmask(SIG_BLOCK, &block, &old);
  std::fflush(nullptr);
  ::execve(binary.c_str(), argv.data(), envp.data());
  int err = errno;
  // Still here: the old process goes on, with everything as it was.
  for (int fd : keep) {
    (void)set_cloexec(fd, true);
  }
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  abandon(fmt::format("execve: {}", std::strerror(err)));
}

// ---- the new process -----------------------------------------------------------

bool node_daemon::read_handover() {
  core::unique_fd fd(opts_.reexec_state_fd);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || static_cast<std::size_t>(st.st_size) > max_state_bytes) {
    core::log_error("otpd: --reexec-state {}: not a state otpd can read ({}); exiting",
                    opts_.reexec_state_fd, std::strerror(errno));
    return false;
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::pread(fd.get(), text.data() + got, text.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  json h = protocol::parse_json(std::string_view(text).substr(0, got));
  if (h.is_discarded() || !h.is_object() || h.value("version", 0) != state_version) {
    core::log_error("otpd: --reexec-state {}: not a state of this otpd version; exiting",
                    opts_.reexec_state_fd);
    return false;
  }
  handover_ = std::move(h);
  return true;
}

void node_daemon::adopt_handover() {
  const json& h = *handover_;
  std::vector<node_snapshot> nodes;
  std::unordered_map<std::string, const json*> proc_of;
  try {
    for (const auto& j : h.at("tree")) {
      nodes.push_back(snapshot_of_json(j));
    }
    for (const auto& j : h.at("procs")) {
      proc_of[j.at("path").get<std::string>()] = &j;
    }
  } catch (const json::exception& e) {
    nodes.clear();
    core::log_error("otpd: the handed-over state is malformed: {}", e.what());
  }
  reexecs_ = h.value("reexecs", std::uint64_t{1});
  std::string from = h.value("binary", std::string());
  if (h.value("containment", std::string()) != to_string(containment_)) {
    core::log_warn("otpd: containment is {} now, {} before the reexec: workers keep what they had",
                   to_string(containment_), h.value("containment", std::string("?")));
  }
  auto adopted = tree_->adopt(nodes);
  if (!adopted) {
    // Nothing to take over: what still runs is ended, the node starts anew.
    core::log_error("otpd: unable to adopt the state after the reexec: {}; restarting every child",
                    adopted.message());
    for (const auto& [path, j] : proc_of) {
      pid_t pid = j->value("pid", -1);
      if (pid > 0) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
      }
    }
    load_holds();
    tree_->start();
  } else {
    for (std::size_t i = 0; i < adopted->unknown.size(); ++i) {
      core::log_warn("otpd: {} is no longer in the config after the reexec", adopted->unknown[i]);
    }
    for (pid_t pid : adopted->orphans) {
      ::kill(-pid, SIGKILL);  // reaped as an orphan
      ::kill(pid, SIGKILL);
    }
    for (const auto& path : adopted->fresh) {
      core::log_info("otpd: {} is new in the config after the reexec; starting it", path);
    }
  }
  // The notify socket of the children that speak sd_notify, before they
  // are registered: what they sent during the exec is read next.
  if (auto it = h.find("notify"); it != h.end() && it->is_object()) {
    core::unique_fd fd(it->value("fd", -1));
    if (fd && ::fcntl(fd.get(), F_GETFD) >= 0) {
      auto s = notify_socket::adopt(&loop_, std::move(fd), it->value("address", std::string()),
                                    [this](const notify_datagram& d) { on_notify(d); });
      if (s) {
        notify_ = std::move(*s);
      } else {
        core::log_error("otpd: the handed-over notify socket: {}", s.message());
      }
    } else {
      (void)fd.release();  // not an fd of ours: nothing to close
    }
  }
  // The workers, as the old process knew them.
  std::size_t kept = 0;
  tree_->for_each([&](const node& n) {
    if (n.is_supervisor || n.pid <= 0) {
      return;
    }
    proc& p = procs_[n.pid];
    p.pid = n.pid;
    p.uid = n.uid;
    p.path = n.path;
    p.name = n.spec->name;
    p.ready = true;
    p.watchdog_usec = n.worker().watchdog_usec;
    if (auto it = proc_of.find(n.path); it != proc_of.end()) {
      const json& j = *it->second;
      try {
        p.cgroup = j.value("cgroup", std::string());
        if (auto v1 = j.find("v1"); v1 != j.end() && v1->is_array() && v1->size() == 4) {
          p.set_v1({(*v1)[0].get<std::string>(), (*v1)[1].get<std::string>(),
                    (*v1)[2].get<std::string>(), (*v1)[3].get<std::string>()});
        }
        if (auto o = j.find("oom_kills"); o != j.end() && o->is_number_unsigned()) {
          p.oom_kills = o->get<std::uint64_t>();
        }
        p.watchdog_usec = j.value("watchdog_usec", p.watchdog_usec);
        p.notify_status = j.value("notify_status", std::string());
        if (auto e = j.find("notify_errno"); e != j.end() && e->is_number_integer()) {
          p.notify_errno = e->get<int>();
        }
      } catch (const json::exception& e) {
        core::log_warn("otpd {}: its handed-over cgroups are malformed: {}", n.path, e.what());
      }
    }
    worker_pid_[n.uid] = n.pid;
    arm_liveness(p);
    arm_watchdog(p);  // a full interval from now
    ++kept;
  });
  // The capture pipes, into the same targets.
  std::size_t pipes = 0;
  for (const auto& c : h.value("captures", json::array())) {
    core::unique_fd fd(c.value("fd", -1));
    if (!fd || ::fcntl(fd.get(), F_GETFD) < 0) {
      (void)fd.release();  // not an fd of ours: nothing to close
      continue;
    }
    (void)set_cloexec(fd.get(), true);
    capture_target t;
    t.out_fd = c.value("out_fd", -1);
    t.prefix = c.value("prefix", std::string());
    t.ident = c.value("ident", std::string());
    t.syslog_pri = c.value("syslog_pri", -1);
    t.timestamps = c.value("timestamps", true);
    if (auto f = c.find("file"); f != c.end() && f->is_object()) {
      t.file = output_.sink_for(output_spec_of_json(*f));
    }
    output_.add(std::move(fd), std::move(t));
    ++pipes;
  }
  // What status and queries remember; a part that does not read is left
  // out, never a reason to lose the workers.
  try {
    for (const auto& e : h.value("exits", json::array())) {
      exits_.emplace_back(e.at(0).get<pid_t>(), reason_of_json(e.at(1)));
    }
    for (const auto& e : h.value("events", json::array())) {
      recent_events_.push_back(proto::lifecycle_event::from_json(e));
    }
    for (const auto& c : h.value("killed_cgroups", json::array())) {
      killed_cgroups_.insert(c.get<std::string>());
    }
    saved_holds_ = h.value("saved_holds", std::vector<std::string>());
  } catch (const json::exception& e) {
    core::log_warn("otpd: part of the handed-over state is malformed: {}", e.what());
  }
  handover_.reset();
  core::log_info(
      "otpd: node {} running in {} (pid {}), re-executed from {}: {} workers kept, {} "
      "capture pipes",
      cfg_->node.name, dir_, ::getpid(), from.empty() ? "?" : from, kept, pipes);
  log_event({"reexec_done",
             "/",
             ::getpid(),
             false,
             {},
             fmt::format("{} workers kept (reexec {})", kept, reexecs_)});
  if (tree_->root().phase == sup_phase::running) {
    sm_.ready(status_line());
  }
  // The signals the old process blocked for the exec come now; a worker
  // that died meanwhile is reaped at once and restarted by its strategy.
  sigset_t block = exec_window_signals();
  ::sigprocmask(SIG_UNBLOCK, &block, nullptr);
  reap();
}

}  // namespace otpd::supervisor::detail

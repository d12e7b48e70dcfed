// otpd, the node: one libuv loop that owns the supervision tree, spawns and
// reaps every child, runs readiness checks and stop sequences, captures
// output, and serves the control socket.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "uv_handle.hpp"
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/supervisor/config.hpp>
#include <otpd/supervisor/daemon.hpp>
#include <otpd/supervisor/tree.hpp>

extern char** environ;

namespace otpd::supervisor {

using json = nlohmann::json;
using core::exit_reason;
using core::unique_fd;

std::string control_socket_path(const std::string& runtime_dir) {
  return runtime_dir + "/control.sock";
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

namespace {

constexpr std::size_t max_request_bytes = 1 << 20;
constexpr std::size_t max_subscriber_backlog = 8 << 20;
constexpr std::size_t exit_ring_size = 4096;
constexpr std::size_t recent_events_size = 256;

std::int64_t now_ms() {
  return core::monotonic_ns() / 1000000;
}

// Every descendant of pid, from /proc/<pid>/task/*/children, so that the ones
// that left the child's process group can still be swept when it stops.
void collect_descendants(pid_t pid, std::vector<pid_t>& out, int depth = 0) {
  if (depth > 64) {
    return;
  }
  std::error_code ec;
  std::filesystem::directory_iterator it(fmt::format("/proc/{}/task", pid), ec);
  if (ec) {
    return;
  }
  for (const auto& t : it) {
    std::ifstream in(t.path() / "children");
    pid_t c;
    while (in >> c) {
      out.push_back(c);
      collect_descendants(c, out, depth + 1);
    }
  }
}

pid_t parent_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) {
    return -1;
  }
  std::istringstream rest(s.substr(close + 2));
  char state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

json reason_json(const exit_reason& r) {
  return {{"reason", r.to_string()},
          {"reason_kind", static_cast<int>(r.kind)},
          {"reason_value", r.value}};
}

// One log file with size rotation: path, path.1 .. path.keep.
struct log_sink {
  output_spec spec;
  unique_fd fd;
  std::uint64_t size = 0;

  void open() {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(spec.path).parent_path(), ec);
    fd.reset(::open(spec.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd) {
      core::log_warn("otpd: unable to open log file {}: {}; dropping output", spec.path,
                     std::strerror(errno));
      return;
    }
    struct stat st {};
    size = ::fstat(fd.get(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  }
  void rotate() {
    fd.reset();
    for (int i = spec.keep - 1; i >= 1; --i) {
      ::rename(fmt::format("{}.{}", spec.path, i).c_str(),
               fmt::format("{}.{}", spec.path, i + 1).c_str());
    }
    ::rename(spec.path.c_str(), (spec.path + ".1").c_str());
    open();
  }
  // Splits a chunk at the size limit, so no file grows past max_bytes
  // however much the child writes at once.
  void write(const char* data, std::size_t n) {
    while (n > 0) {
      if (spec.rotate && size >= spec.max_bytes) {
        rotate();
      }
      if (!fd) {
        return;
      }
      std::size_t room = spec.rotate ? static_cast<std::size_t>(spec.max_bytes - size) : n;
      std::size_t chunk = n < room ? n : room;
      ssize_t w = ::write(fd.get(), data, chunk);
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        return;
      }
      size += static_cast<std::uint64_t>(w);
      data += w;
      n -= static_cast<std::size_t>(w);
    }
  }
};

// Reads a child's stdout/stderr pipe into a sink until EOF. The pipe may
// outlive the child (grandchildren holding it), so it is not tied to a pid.
struct capture {
  unique_fd fd;  // declared before poll: the poll handle closes first
  uv_handle<uv_poll_t> poll;
  std::shared_ptr<log_sink> sink;
};

struct proc {
  enum class role : std::uint8_t { worker, probe };
  role r = role::worker;
  pid_t pid = -1;
  std::uint64_t uid = 0;  // the worker (for a probe: the worker it checks)
  std::string path;
  std::string name;
  bool ready = false;
  bool stopping = false;
  bool start_failed = false;
  exit_reason fail_reason;
  // The error pipe of core::spawn_start until the exec outcome is known:
  // EOF means exec happened, 4 bytes an errno (a failed start).
  unique_fd exec_fd;  // before exec_poll: the poll closes first
  uv_handle<uv_poll_t> exec_poll;
  unique_fd ready_fd;  // before ready_poll: the poll closes first
  uv_handle<uv_poll_t> ready_poll;
  uv_handle<uv_timer_t> timer;        // start timeout, then the shutdown timeout
  uv_handle<uv_timer_t> probe_timer;  // readiness probes
  unique_fd probe_sock;
  pid_t probe_pid = -1;
  std::vector<pid_t> descendants;
};

struct conn {
  std::uint64_t id = 0;
  uv_handle<uv_pipe_t> pipe;
  std::string in;
  bool events = false;
  bool closing = false;
};

struct write_req {
  uv_write_t req;
  std::string data;
};

class node_daemon {
 public:
  node_daemon(daemon_options opts, std::shared_ptr<const config> cfg)
      : opts_(std::move(opts)), cfg_(std::move(cfg)) {}
  node_daemon(const node_daemon&) = delete;
  node_daemon& operator=(const node_daemon&) = delete;
  node_daemon(node_daemon&&) = delete;
  node_daemon& operator=(node_daemon&&) = delete;
  ~node_daemon() = default;

  int run();

 private:
  static node_daemon& self(uv_handle_t* h) { return *static_cast<node_daemon*>(h->loop->data); }
  template <class H>
  static node_daemon& self(H* h) {
    return self(reinterpret_cast<uv_handle_t*>(h));
  }

  bool setup();
  void teardown();
  void drain();
  void execute(action& a);
  void log_event(const event& ev);
  void broadcast(const json& j);

  void spawn_worker(std::uint64_t uid);
  void stop_worker(std::uint64_t uid);
  void worker_ready(proc& p);
  void watch_exec(proc& p, unique_fd exec_fd);
  bool on_exec_outcome(proc& p);
  void worker_start_failed(proc& p, const exit_reason& why, const std::string& what);
  // Arms slot as a timer of worker pid that calls Fire(pid) after `after`
  // ms, then every `every` ms (0: once). The pid, not the proc, is what the
  // timer keeps: the worker may be gone by the time it fires.
  template <void (node_daemon::*Fire)(pid_t)>
  void arm_pid_timer(uv_handle<uv_timer_t>& slot, pid_t pid, std::uint64_t after,
                     std::uint64_t every);
  void arm_start_timeout(proc& p, int ms);
  void on_start_timeout(pid_t pid);
  void on_shutdown_timeout(pid_t pid);
  void start_probe(proc& p);
  void probe_tick(pid_t pid);
  void reap();
  void on_reaped(pid_t pid, const exit_reason& reason);
  void add_capture(int fd, std::shared_ptr<log_sink> sink);
  std::shared_ptr<log_sink> sink_for(const output_spec& spec);
  std::vector<std::string> env_for(const node& n, bool notify) const;
  void rebuild_base_env();
  void cleanup_registry(pid_t pid, const std::string& name);
  void kill_orphans();

  // Control socket.
  bool listen_control();
  void on_connection();
  void on_read(conn& c, ssize_t n, const uv_buf_t* buf);
  void handle_request(conn& c, const std::string& line);
  json handle_command(conn& c, const json& req);
  void send(conn& c, const json& j);
  void close_conn(std::uint64_t id);
  json status_json() const;
  json node_json(const node& n) const;
  pid_t pid_of_name(const std::string& name) const;

  daemon_options opts_;
  std::shared_ptr<const config> cfg_;
  std::string dir_;
  uv_loop_t loop_{};
  std::unique_ptr<tree> tree_;
  std::unordered_map<pid_t, proc> procs_;
  std::unordered_map<std::uint64_t, pid_t> worker_pid_;
  std::unordered_map<int, std::unique_ptr<capture>> captures_;
  std::map<std::string, std::shared_ptr<log_sink>> sinks_;
  std::map<std::string, std::string> base_env_;
  // base_env_ as KEY=VALUE without the per-child keys: most children add
  // only those, so their environment is a copy plus three entries.
  std::vector<std::string> base_list_;
  uv_handle<uv_signal_t> sig_chld_, sig_term_, sig_int_, sig_hup_;
  uv_handle<uv_pipe_t> server_;
  std::unordered_map<std::uint64_t, std::unique_ptr<conn>> conns_;
  std::uint64_t next_conn_ = 1;
  std::unordered_map<pid_t, std::vector<std::uint64_t>> monitors_;
  std::deque<std::pair<pid_t, exit_reason>> exits_;
  std::deque<json> recent_events_;
  std::unordered_map<std::uint64_t, uv_handle<uv_timer_t>> backoff_timers_;
  unique_fd lock_fd_;
  bool draining_ = false;
  int exit_code_ = -1;
};

// ---- set-up and tear-down ----------------------------------------------------

bool node_daemon::setup() {
  // Whatever fds otpd inherited (beyond 0, 1, 2) are not for its children:
  // mark them close-on-exec, as everything otpd opens itself already is.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  dir_ = pick_runtime_dir(opts_.runtime_dir, cfg_->node.runtime_dir);
  if (auto r = core::ensure_private_dir(dir_); !r) {
    core::log_error("otpd: unable to create runtime dir {}: {}; exiting", dir_,
                    r.error().message());
    return false;
  }
  for (const char* sub : {"/mbox", "/names"}) {
    if (auto r = core::ensure_private_dir(dir_ + sub); !r) {
      core::log_error("otpd: unable to create {}{}: {}; exiting", dir_, sub, r.error().message());
      return false;
    }
  }
  // One otpd per runtime dir: a second one would double every worker. The
  // lock dies with us, even by SIGKILL.
  lock_fd_.reset(::open((dir_ + "/otpd.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_fd_ || ::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    core::log_error("otpd: unable to lock {}/otpd.lock: {}; is another otpd running on {}?", dir_,
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
  auto sig = [this](uv_handle<uv_signal_t>& h, int signum, uv_signal_cb cb) {
    h = uv_handle<uv_signal_t>::make();
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
  sig(sig_hup_, SIGHUP, [](uv_signal_t* h, int) {
    auto& d = self(h);
    json req = {{"cmd", "reload"}};
    conn none;
    json ans = d.handle_command(none, req);
    if (!ans.value("ok", false)) {
      core::log_error("otpd: reload refused: {}", ans.value("error", std::string()));
    }
  });
  ::signal(SIGPIPE, SIG_IGN);
  if (!listen_control()) {
    return false;
  }
  tree_ = std::make_unique<tree>(cfg_, now_ms, static_cast<std::uint64_t>(::getpid()));
  return true;
}

void node_daemon::teardown() {
  // Anything re-parented to us and still alive dies with the node.
  kill_orphans();
  captures_.clear();
  conns_.clear();
  backoff_timers_.clear();
  procs_.clear();
  server_.reset();
  sig_chld_.reset();
  sig_term_.reset();
  sig_int_.reset();
  sig_hup_.reset();
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_loop_close(&loop_);
  ::unlink(control_socket_path(dir_).c_str());
}

void node_daemon::kill_orphans() {
  std::error_code ec;
  pid_t me = ::getpid();
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) == 0) {
      continue;
    }
    pid_t pid = std::atoi(name.c_str());
    if (parent_of(pid) == me) {
      ::kill(pid, SIGKILL);
      int status;
      ::waitpid(pid, &status, 0);
    }
  }
}

int node_daemon::run() {
  if (!setup()) {
    return 1;
  }
  core::log_info("otpd: node {} running in {} (pid {})", cfg_->node.name, dir_, ::getpid());
  tree_->start();
  drain();
  while (exit_code_ < 0 && uv_run(&loop_, UV_RUN_ONCE) != 0) {
  }
  teardown();
  return exit_code_ < 0 ? 1 : exit_code_;
}

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
  base_env_.erase("OTPD_READY_FD");
  base_env_.erase("OTPD_NAME");
  base_env_["OTPD_RUNTIME_DIR"] = dir_;
  base_env_["OTPD_NODE"] = cfg_->node.name;
  base_env_.erase("OTPD_CHILD");
  base_list_.clear();
  for (const auto& [k, v] : base_env_) {
    base_list_.push_back(k + "=" + v);
  }
}

std::vector<std::string> node_daemon::env_for(const node& n, bool notify) const {
  if (n.worker().env.empty()) {
    // The common case, on the restart path: no merge needed.
    std::vector<std::string> out;
    out.reserve(base_list_.size() + 3);
    out = base_list_;
    out.push_back("OTPD_CHILD=" + n.path);
    if (!n.spec->name.empty()) {
      out.push_back("OTPD_NAME=" + n.spec->name);
    }
    if (notify) {
      out.emplace_back("OTPD_READY_FD=3");
    }
    return out;
  }
  std::map<std::string, std::string> env = base_env_;
  for (const auto& [k, v] : n.worker().env) {
    env[k] = v;
  }
  env["OTPD_CHILD"] = n.path;
  if (!n.spec->name.empty()) {
    env["OTPD_NAME"] = n.spec->name;
  }
  if (notify) {
    env["OTPD_READY_FD"] = "3";
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) {
    out.push_back(k + "=" + v);
  }
  return out;
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
}

void node_daemon::execute(action& a) {
  switch (a.k) {
    case action::kind::spawn:
      spawn_worker(a.uid);
      return;
    case action::kind::stop:
      stop_worker(a.uid);
      return;
    case action::kind::schedule: {
      auto t = uv_handle<uv_timer_t>::make();
      uv_timer_init(&loop_, t.get());
      t.get()->data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(a.uid));
      uv_timer_start(
          t.get(),
          [](uv_timer_t* h) {
            auto& d = self(h);
            auto uid = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(h->data));
            d.tree_->on_timer(uid);
            d.drain();
            d.backoff_timers_.erase(uid);  // closes this timer after the callback
          },
          static_cast<std::uint64_t>(a.delay_ms), 0);
      backoff_timers_[a.uid] = std::move(t);
      return;
    }
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

void node_daemon::log_event(const event& ev) {
  json j = {{"event", ev.type}, {"path", ev.path}, {"ts_ms", now_ms()}};
  if (ev.pid > 0) {
    j["pid"] = ev.pid;
  }
  if (ev.has_reason) {
    j.update(reason_json(ev.reason));
  }
  if (!ev.detail.empty()) {
    j["detail"] = ev.detail;
  }
  if (opts_.format == log_format::json) {
    core::log_info("{}", j.dump());
  } else {
    std::string line = fmt::format("{} {}", ev.path, ev.type);
    if (ev.pid > 0) {
      line += fmt::format(" pid {}", ev.pid);
    }
    if (ev.has_reason) {
      line += ": " + ev.reason.to_string();
    }
    if (!ev.detail.empty()) {
      line += " (" + ev.detail + ")";
    }
    auto level = ev.type == "intensity_exceeded" || ev.type == "start_failed"
                     ? core::log_level::error
                     : core::log_level::info;
    core::log(level, "{}", line);
  }
  recent_events_.push_back(j);
  if (recent_events_.size() > recent_events_size) {
    recent_events_.pop_front();
  }
  broadcast(j);
}

void node_daemon::broadcast(const json& j) {
  std::vector<std::uint64_t> slow;
  for (auto& [id, c] : conns_) {
    if (!c->events || c->closing) {
      continue;
    }
    if (uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(c->pipe.get())) >
        max_subscriber_backlog) {
      slow.push_back(id);  // a subscriber that does not read loses its stream, not our memory
      continue;
    }
    send(*c, j);
  }
  for (auto id : slow) {
    core::log_warn("otpd: event subscriber {} is not reading; closing it", id);
    close_conn(id);
  }
}

// ---- spawning and readiness --------------------------------------------------

std::shared_ptr<log_sink> node_daemon::sink_for(const output_spec& spec) {
  auto& s = sinks_[spec.path];
  if (!s) {
    s = std::make_shared<log_sink>();
    s->spec = spec;
    s->open();
  }
  s->spec = spec;
  return s;
}

void node_daemon::add_capture(int fd, std::shared_ptr<log_sink> sink) {
  auto c = std::make_unique<capture>();
  c->fd.reset(fd);
  c->sink = std::move(sink);
  c->poll = uv_handle<uv_poll_t>::make();
  if (uv_poll_init(&loop_, c->poll.get(), fd) != 0) {
    c->poll.discard();
    return;
  }
  c->poll.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(fd));
  uv_poll_start(c->poll.get(), UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto& d = self(h);
    int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(h->data));
    auto it = d.captures_.find(fd);
    if (it == d.captures_.end()) {
      return;
    }
    char buf[65536];
    for (int rounds = 0; rounds < 16; ++rounds) {
      ssize_t n = status < 0 ? -1 : ::read(fd, buf, sizeof buf);
      if (n > 0) {
        it->second->sink->write(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
      }
      d.captures_.erase(it);  // EOF: closes the poll handle, then the fd
      return;
    }
  });
  captures_[fd] = std::move(c);
}

void node_daemon::spawn_worker(std::uint64_t uid) {
  node* n = tree_->find(uid);
  if (n == nullptr) {
    return;
  }
  const worker_spec& w = n->worker();
  core::spawn_options o;
  o.argv = w.argv;
  o.program = w.program;
  o.argv.insert(o.argv.end(), n->extra_args.begin(), n->extra_args.end());
  bool notify = w.readiness.kind == readiness_kind::notify;
  o.env = env_for(*n, notify);
  o.inherit_env = false;
  o.cwd = w.cwd;
  // stdin is /dev/null: a child must not read otpd's terminal.
  o.fds.emplace_back(-1, 0);
  o.uid = w.uid;
  o.gid = w.gid;
  unique_fd ready_r, ready_w;
  if (notify) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      ready_r.reset(p[0]);
      ready_w.reset(p[1]);
      o.fds.emplace_back(ready_w.get(), 3);
    }
  }
  // stdout/stderr: inherited, /dev/null, or a pipe to a rotated file (one
  // pipe when both go to the same file, so lines keep their order).
  std::vector<std::pair<unique_fd, std::shared_ptr<log_sink>>> reads;
  std::vector<unique_fd> writes;
  auto place = [&](const output_spec& s, int target) {
    if (s.kind == output_kind::null) {
      o.fds.emplace_back(-1, target);
    } else if (s.kind == output_kind::file) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        o.fds.emplace_back(-1, target);
        return;
      }
      // The child's end must block: most programs do not expect EAGAIN.
      ::fcntl(p[1], F_SETFL, 0);
      reads.emplace_back(unique_fd(p[0]), sink_for(s));
      writes.emplace_back(p[1]);
      o.fds.emplace_back(p[1], target);
    }
  };
  place(w.stdout_spec, 1);
  if (w.stderr_spec.kind == output_kind::file && w.stdout_spec.kind == output_kind::file &&
      w.stderr_spec.path == w.stdout_spec.path) {
    o.fds.emplace_back(writes.back().get(), 2);
  } else {
    place(w.stderr_spec, 2);
  }
  // The exec outcome is read on the loop (watch_exec), never waited for
  // here. vfork: otpd's page tables are not copied, which is most of what a
  // fork of otpd costs over a fork of a small program (restart latency, and
  // 500 restarts in a burst: measured 0.45-0.53 s with vfork against
  // 0.8-1.6 s with fork, see docs/benchmarks/restart.md).
  auto r = core::spawn_start(o, core::spawn_method::vfork);
  ready_w.reset();
  writes.clear();
  if (!r) {
    core::log_error("otpd {}: unable to spawn {}: {}; counting it as a failed start", n->path,
                    o.argv[0], r.error().message());
    tree_->on_exit(uid, exit_reason{core::exit_kind::exec_failed, r.error().value()});
    return;
  }
  pid_t pid = r->pid;
  // Reaping goes through waitid(P_ALL) on SIGCHLD, so no pidfd is kept:
  // one fd per child would eat the budget at 10,000 children. The exec fd
  // lives only until the child has exec'd.
  for (auto& [fd, sink] : reads) {
    add_capture(fd.release(), sink);
  }
  proc& p = procs_[pid];
  p.pid = pid;
  p.uid = uid;
  p.path = n->path;
  p.name = n->spec->name;
  worker_pid_[uid] = pid;
  tree_->on_spawned(uid, pid);
  watch_exec(p, std::move(r->exec_fd));
  switch (w.readiness.kind) {
    case readiness_kind::exec:
      return;  // ready when the exec fd reports EOF
    case readiness_kind::notify: {
      p.ready_fd = std::move(ready_r);
      p.ready_poll = uv_handle<uv_poll_t>::make();
      if (uv_poll_init(&loop_, p.ready_poll.get(), p.ready_fd.get()) != 0) {
        p.ready_poll.discard();
        worker_start_failed(p, {core::exit_kind::unknown, 0}, "unable to watch the ready fd");
        return;
      }
      p.ready_poll.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(pid));
      uv_poll_start(p.ready_poll.get(), UV_READABLE | UV_DISCONNECT, [](uv_poll_t* h, int, int) {
        auto& d = self(h);
        pid_t pid = static_cast<pid_t>(reinterpret_cast<std::intptr_t>(h->data));
        auto it = d.procs_.find(pid);
        if (it == d.procs_.end() || it->second.ready || it->second.stopping) {
          return;
        }
        proc& p = it->second;
        char buf[64];
        ssize_t n = ::read(p.ready_fd.get(), buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          return;
        }
        if (n > 0 && std::memchr(buf, '\n', static_cast<std::size_t>(n)) != nullptr) {
          d.worker_ready(p);
        } else if (n <= 0) {
          d.worker_start_failed(p, {core::exit_kind::unknown, 0},
                                "closed its ready fd before a newline");
        }
        d.drain();
      });
      arm_start_timeout(p, w.readiness.start_timeout_ms);
      return;
    }
    case readiness_kind::tcp:
    case readiness_kind::unix_socket:
    case readiness_kind::command:
      arm_start_timeout(p, w.readiness.start_timeout_ms);
      start_probe(p);
      return;
  }
}

void node_daemon::watch_exec(proc& p, unique_fd exec_fd) {
  p.exec_fd = std::move(exec_fd);
  p.exec_poll = uv_handle<uv_poll_t>::make();
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
  auto outcome = core::read_exec_outcome(p.exec_fd.get(), &err);
  if (outcome == core::exec_outcome::pending) {
    return false;
  }
  p.exec_poll.reset();
  p.exec_fd.reset();
  if (outcome == core::exec_outcome::failed) {
    if (!p.start_failed && !p.ready && !p.stopping) {
      node* n = tree_->find(p.uid);
      core::log_error("otpd {}: unable to spawn {}: {}; counting it as a failed start", p.path,
                      n != nullptr ? n->worker().argv[0] : std::string("?"), std::strerror(err));
      p.start_failed = true;
      p.fail_reason = {core::exit_kind::exec_failed, err};
      p.timer.reset();
      p.probe_timer.reset();
      p.probe_sock.reset();
      p.ready_poll.reset();
      p.ready_fd.reset();
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
  p.timer.reset();
  p.probe_timer.reset();
  p.probe_sock.reset();
  p.ready_poll.reset();
  p.ready_fd.reset();
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
  p.timer.reset();
  p.probe_timer.reset();
  p.probe_sock.reset();
  p.ready_poll.reset();
  p.ready_fd.reset();
  ::kill(-p.pid, SIGKILL);
}

template <void (node_daemon::*Fire)(pid_t)>
void node_daemon::arm_pid_timer(uv_handle<uv_timer_t>& slot, pid_t pid, std::uint64_t after,
                                std::uint64_t every) {
  slot = uv_handle<uv_timer_t>::make();
  uv_timer_init(&loop_, slot.get());
  slot.get()->data = reinterpret_cast<void*>(static_cast<std::intptr_t>(pid));
  uv_timer_start(
      slot.get(),
      [](uv_timer_t* h) {
        (self(h).*Fire)(static_cast<pid_t>(reinterpret_cast<std::intptr_t>(h->data)));
      },
      after, every);
}

void node_daemon::arm_start_timeout(proc& p, int ms) {
  arm_pid_timer<&node_daemon::on_start_timeout>(p.timer, p.pid, static_cast<std::uint64_t>(ms), 0);
}

void node_daemon::on_start_timeout(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end() || it->second.ready || it->second.stopping) {
    return;
  }
  worker_start_failed(it->second, {core::exit_kind::unknown, 0},
                      "not ready within its start timeout");
}

void node_daemon::start_probe(proc& p) {
  node* n = tree_->find(p.uid);
  auto every =
      static_cast<std::uint64_t>(n != nullptr ? n->worker().readiness.probe_interval_ms : 10);
  arm_pid_timer<&node_daemon::probe_tick>(p.probe_timer, p.pid, 0, every);
}

// One readiness probe: a non-blocking connect (TCP or Unix), or a run of the
// readiness command (its exit arrives through the reaper).
void node_daemon::probe_tick(pid_t pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end() || it->second.ready || it->second.start_failed || it->second.stopping) {
    return;
  }
  proc& p = it->second;
  node* n = tree_->find(p.uid);
  if (n == nullptr) {
    return;
  }
  const readiness_spec& r = n->worker().readiness;
  if (r.kind == readiness_kind::command) {
    if (p.probe_pid > 0) {
      return;  // the previous run is still going
    }
    core::spawn_options o;
    o.argv = r.command;
    o.env = env_for(*n, false);
    o.inherit_env = false;
    o.fds = {{-1, 0}, {-1, 1}, {-1, 2}};
    auto s = core::spawn(o);
    if (!s) {
      return;
    }
    s->pidfd.reset();
    proc& probe = procs_[s->pid];
    probe.r = proc::role::probe;
    probe.pid = s->pid;
    probe.uid = p.uid;
    p.probe_pid = s->pid;  // p is still valid: unordered_map nodes are stable
    return;
  }
  if (p.probe_sock) {
    // A connect in progress from the previous tick.
    int err = 0;
    socklen_t len = sizeof err;
    pollfd pfd{p.probe_sock.get(), POLLOUT, 0};
    if (::poll(&pfd, 1, 0) == 1 &&
        ::getsockopt(p.probe_sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      worker_ready(p);
      drain();
      return;
    }
    if (::poll(&pfd, 1, 0) == 0) {
      return;
    }
    p.probe_sock.reset();
    return;
  }
  int rc = -1;
  if (r.kind == readiness_kind::tcp) {
    p.probe_sock.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(r.port));
    if (::inet_pton(AF_INET, r.host == "localhost" ? "127.0.0.1" : r.host.c_str(), &a.sin_addr) !=
        1) {
      p.probe_sock.reset();
      return;
    }
    rc = ::connect(p.probe_sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    p.probe_sock.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, r.path.c_str(), sizeof a.sun_path - 1);
    rc = ::connect(p.probe_sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc == 0) {
    worker_ready(p);
    drain();
    return;
  }
  if (errno != EINPROGRESS) {
    p.probe_sock.reset();
  }
}

// ---- stopping ----------------------------------------------------------------

void node_daemon::stop_worker(std::uint64_t uid) {
  auto w = worker_pid_.find(uid);
  if (w == worker_pid_.end()) {
    return;  // never spawned or already reaped: the tree has been told
  }
  proc& p = procs_[w->second];
  node* n = tree_->find(uid);
  if (n == nullptr || p.stopping) {
    return;
  }
  p.stopping = true;
  p.probe_timer.reset();
  p.probe_sock.reset();
  p.ready_poll.reset();
  p.ready_fd.reset();
  p.timer.reset();
  // Remember the whole family now: descendants that left the process group
  // are re-parented to us when the child dies, and swept then.
  collect_descendants(p.pid, p.descendants);
  const shutdown_spec& s = n->worker().shutdown;
  if (s.kind == shutdown_kind::brutal_kill) {
    ::kill(-p.pid, SIGKILL);
    return;
  }
  ::kill(p.pid, s.signal);
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
    ::kill(-pid, SIGKILL);
  }
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
    if (it != procs_.end() && it->second.r == proc::role::worker) {
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
    auto w = procs_.find(worker_pid_.count(p.uid) != 0 ? worker_pid_[p.uid] : -1);
    if (w != procs_.end()) {
      w->second.probe_pid = -1;
      if (observed.kind == core::exit_kind::normal && !w->second.ready && !w->second.stopping &&
          !w->second.start_failed) {
        worker_ready(w->second);
      }
    }
    return;
  }
  worker_pid_.erase(p.uid);
  if (p.probe_pid > 0) {
    ::kill(p.probe_pid, SIGKILL);
  }
  // Sweep what left the group: re-parented to us now, so these pids are ours
  // (not reaped yet) and cannot have been reused.
  pid_t me = ::getpid();
  for (pid_t d : p.descendants) {
    if (parent_of(d) == me) {
      ::kill(d, SIGKILL);
    }
  }
  // The replacement first (restart latency), the bookkeeping after: the
  // clean-up only touches entries of the dead pid, never the new one's.
  tree_->on_exit(p.uid, p.start_failed ? p.fail_reason : observed);
  drain();
  cleanup_registry(pid, p.name);
  exits_.emplace_back(pid, observed);
  if (exits_.size() > exit_ring_size) {
    exits_.pop_front();
  }
  if (auto m = monitors_.find(pid); m != monitors_.end()) {
    json down = {{"event", "down"}, {"pid", pid}};
    down.update(reason_json(observed));
    for (auto id : m->second) {
      if (auto c = conns_.find(id); c != conns_.end() && !c->second->closing) {
        send(*c->second, down);
      }
    }
    monitors_.erase(m);
  }
}

// A SIGKILLed process cannot remove its mailbox or its name: we do.
void node_daemon::cleanup_registry(pid_t pid, const std::string& name) {
  std::string mbox = fmt::format("{}/mbox/{}", dir_, pid);
  ::unlink(mbox.c_str());
  if (name.empty()) {
    return;
  }
  std::string link = fmt::format("{}/names/{}", dir_, name);
  char buf[256];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = '\0';
    if (std::string(buf) == fmt::format("../mbox/{}", pid)) {
      ::unlink(link.c_str());
    }
  }
}

pid_t node_daemon::pid_of_name(const std::string& name) const {
  if (name.empty() || name.find('/') != std::string::npos) {
    return -1;
  }
  char buf[256];
  ssize_t n = ::readlink(fmt::format("{}/names/{}", dir_, name).c_str(), buf, sizeof buf - 1);
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

// ---- control socket ----------------------------------------------------------

bool node_daemon::listen_control() {
  std::string path = control_socket_path(dir_);
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    core::log_error("otpd: control socket path too long: {}; exiting", path);
    return false;
  }
  ::unlink(path.c_str());  // stale from a dead otpd: we hold the lock
  server_ = uv_handle<uv_pipe_t>::make();
  uv_pipe_init(&loop_, server_.get(), 0);
  // Created 0600 from the start: no window where another user could connect.
  mode_t old = ::umask(0177);
  int rc = uv_pipe_bind(server_.get(), path.c_str());
  ::umask(old);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(server_.get()), 128,
                   [](uv_stream_t* s, int status) {
                     if (status == 0) {
                       self(s).on_connection();
                     }
                   });
  }
  if (rc != 0) {
    core::log_error("otpd: unable to listen on {}: {}; exiting", path, uv_strerror(rc));
    return false;
  }
  return true;
}

void node_daemon::on_connection() {
  auto c = std::make_unique<conn>();
  c->id = next_conn_++;
  c->pipe = uv_handle<uv_pipe_t>::make();
  uv_pipe_init(&loop_, c->pipe.get(), 0);
  auto* stream = reinterpret_cast<uv_stream_t*>(c->pipe.get());
  if (uv_accept(reinterpret_cast<uv_stream_t*>(server_.get()), stream) != 0) {
    return;
  }
  // Same user or root only: the socket mode already says so, this makes sure.
  uv_os_fd_t fd;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(stream), &fd) != 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != ::geteuid() && cred.uid != 0)) {
    core::log_warn("otpd: refusing control connection from uid {}", cred.uid);
    return;
  }
  c->pipe.get()->data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(c->id));
  uv_read_start(
      stream,
      [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        static char slab[65536];
        buf->base = slab;
        buf->len = sizeof slab;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto& d = self(s);
        auto id = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(s->data));
        auto it = d.conns_.find(id);
        if (it != d.conns_.end()) {
          d.on_read(*it->second, n, buf);
        }
      });
  conns_[c->id] = std::move(c);
}

void node_daemon::close_conn(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) {
    return;
  }
  conns_.erase(it);  // closes the pipe handle; pending writes are cancelled by libuv
}

void node_daemon::on_read(conn& c, ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    close_conn(c.id);
    return;
  }
  c.in.append(buf->base, static_cast<std::size_t>(n));
  std::size_t start = 0;
  std::uint64_t id = c.id;
  for (;;) {
    auto nl = c.in.find('\n', start);
    if (nl == std::string::npos) {
      break;
    }
    std::string line = c.in.substr(start, nl - start);
    start = nl + 1;
    handle_request(c, line);
    if (conns_.count(id) == 0) {
      return;  // the request closed this connection
    }
  }
  c.in.erase(0, start);
  if (c.in.size() > max_request_bytes) {
    core::log_warn("otpd: control request over {} bytes; closing that connection",
                   max_request_bytes);
    close_conn(c.id);
  }
}

void node_daemon::send(conn& c, const json& j) {
  auto w = std::make_unique<write_req>();
  w->data = j.dump() + "\n";
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  w->req.data = w.get();
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(c.pipe.get()), &b, 1,
                    [](uv_write_t* req, int) {
                      std::unique_ptr<write_req> done(static_cast<write_req*>(req->data));
                    });
  if (rc == 0) {
    (void)w.release();  // owned by the write callback now
  }
}

void node_daemon::handle_request(conn& c, const std::string& line) {
  if (line.empty()) {
    return;
  }
  json req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
    send(c, {{"ok", false}, {"error", "malformed request: expected {\"cmd\": ...}"}});
    return;
  }
  json ans;
  try {
    ans = handle_command(c, req);
  } catch (const json::exception& e) {
    ans = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
  if (!ans.is_null()) {
    send(c, ans);
  }
  drain();
}

json node_daemon::node_json(const node& n) const {
  json j = {{"id", n.id},
            {"path", n.path},
            {"pid", n.pid > 0 ? json(n.pid) : json(nullptr)},
            {"state", to_string(n.state)},
            {"restarts", n.restarts},
            {"type", n.is_supervisor ? "supervisor" : "worker"},
            {"restart", to_string(n.spec->restart)}};
  if (n.state == child_state::running && n.started_at_ms > 0) {
    j["uptime_ms"] = now_ms() - n.started_at_ms;
  }
  if (n.has_exit) {
    j["last_exit"] = n.last_exit.to_string();
  }
  if (!n.spec->name.empty()) {
    j["name"] = n.spec->name;
  }
  if (n.is_supervisor) {
    j["strategy"] = to_string(n.sup().strat);
    json kids = json::array();
    for (const auto& c : n.children) {
      if (!c->removed || c->state != child_state::stopped) {
        kids.push_back(node_json(*c));
      }
    }
    j["children"] = std::move(kids);
  }
  return j;
}

json node_daemon::status_json() const {
  const node& r = tree_->root();
  json j = node_json(r);
  j["ok"] = true;
  j["node"] = cfg_->node.name;
  j["otpd_pid"] = ::getpid();
  j["runtime_dir"] = dir_;
  j["path"] = "/";
  return j;
}

json node_daemon::handle_command(conn& c, const json& req) {
  const std::string cmd = req["cmd"].get<std::string>();
  auto fail = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  auto who = [&]() { return req.value("id", std::string()); };
  std::string msg;
  if (cmd == "ping") {
    return {{"ok", true}, {"pid", ::getpid()}};
  }
  if (cmd == "status" || cmd == "tree") {
    return status_json();
  }
  if (cmd == "start" || cmd == "stop" || cmd == "restart") {
    core::Result<void> r = cmd == "start"  ? tree_->start_child(who(), msg)
                           : cmd == "stop" ? tree_->stop_child(who(), msg)
                                           : tree_->restart_child(who(), msg);
    return r ? json{{"ok", true}} : fail(msg);
  }
  if (cmd == "kill") {
    node* n = tree_->resolve(who(), msg);
    if (n == nullptr) {
      return fail(msg);
    }
    if (n->is_supervisor || n->pid <= 0) {
      return fail(fmt::format("{} has no process to kill", n->path));
    }
    int sig = SIGKILL;
    if (req.contains("signal")) {
      sig = req["signal"].is_number() ? req["signal"].get<int>()
                                      : core::signal_from_name(req["signal"].get<std::string>());
    }
    if (sig <= 0 || ::kill(n->pid, sig) != 0) {
      return fail(fmt::format("unable to signal {}: {}", n->pid,
                              sig <= 0 ? "unknown signal" : std::strerror(errno)));
    }
    return {{"ok", true}, {"pid", n->pid}};
  }
  if (cmd == "start-child") {
    std::vector<std::string> args;
    if (req.contains("args")) {
      args = req["args"].get<std::vector<std::string>>();
    }
    auto r = tree_->start_dynamic(req.value("supervisor", std::string()), args, msg);
    return r ? json{{"ok", true}, {"path", *r}} : fail(msg);
  }
  if (cmd == "terminate-child") {
    auto r = tree_->terminate_dynamic(req.value("supervisor", std::string()), who(), msg);
    return r ? json{{"ok", true}} : fail(msg);
  }
  if (cmd == "reload") {
    auto cfg = load_config(opts_.config_path, msg);
    if (!cfg) {
      return fail(msg);
    }
    cfg_ = *cfg;
    ::malloc_trim(0);
    rebuild_base_env();
    auto s = tree_->reload(cfg_);
    drain();
    return {{"ok", true}, {"added", s.added}, {"removed", s.removed}, {"changed", s.changed}};
  }
  if (cmd == "shutdown") {
    tree_->shutdown();
    return {{"ok", true}};
  }
  if (cmd == "reopen-logs") {
    for (auto& [path, s] : sinks_) {
      s->fd.reset();
      s->open();
    }
    return {{"ok", true}, {"files", sinks_.size()}};
  }
  if (cmd == "events") {
    c.events = req.value("follow", true);
    json recent = json::array();
    for (const auto& e : recent_events_) {
      recent.push_back(e);
    }
    return {{"ok", true}, {"recent", std::move(recent)}};
  }
  if (cmd == "whereis") {
    pid_t pid = pid_of_name(req.value("name", std::string()));
    return pid > 0 ? json{{"ok", true}, {"pid", pid}} : fail("no such name");
  }
  if (cmd == "monitor") {
    pid_t pid = -1;
    if (req.contains("pid")) {
      pid = req["pid"].get<pid_t>();
    } else {
      pid = pid_of_name(req.value("name", std::string()));
    }
    if (c.id == 0) {
      return fail("no connection");
    }
    if (pid <= 0 || procs_.count(pid) == 0) {
      // OTP: monitoring a process that is gone gives DOWN noproc at once.
      json down = {{"event", "down"}, {"pid", pid}};
      down.update(reason_json({core::exit_kind::noproc, 0}));
      send(c, {{"ok", true}, {"pid", pid}});
      return down;
    }
    monitors_[pid].push_back(c.id);
    return {{"ok", true}, {"pid", pid}};
  }
  if (cmd == "exit-reason") {
    pid_t pid = req.value("pid", -1);
    for (auto it = exits_.rbegin(); it != exits_.rend(); ++it) {
      if (it->first == pid) {
        json j = {{"ok", true}, {"found", true}, {"pid", pid}};
        j.update(reason_json(it->second));
        return j;
      }
    }
    return {{"ok", true}, {"found", false}, {"pid", pid}};
  }
  return fail("unknown command: " + cmd);
}

}  // namespace

int run_daemon(const daemon_options& options) {
  std::string msg;
  auto cfg = load_config(options.config_path, msg);
  if (!cfg) {
    core::log_error("{}", msg);
    return 1;
  }
  // Parsing a big config leaves megabytes of freed yaml-cpp nodes in the
  // heap; give them back, or every fork copies their page tables.
  ::malloc_trim(0);
  node_daemon d(options, *cfg);
  return d.run();
}

}  // namespace otpd::supervisor

// otpctl: talks to a running otpd over its control socket.
// Exit codes: 0 ok, 1 negative answer, 100 usage error, 111 system error.
// `call` and `cast` do not go through otpd: they are messages from this
// process's own mailbox (the process runtime) to a registered worker.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "otpctl_logs.hpp"
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <otpd/core/cli.hpp>
#include <otpd/core/result.hpp>
#include <otpd/observer/top.hpp>
#include <otpd/observer/web_files.hpp>
#include <otpd/protocol/control.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/supervisor/control_client.hpp>
#include <otpd/supervisor/daemon.hpp>

namespace {

namespace proto = otpd::protocol;
using json = nlohmann::json;
using otpd::supervisor::control_client;

constexpr int exit_ok = 0;
constexpr int exit_no = 1;
constexpr int exit_usage = 100;
constexpr int exit_sys = 111;

std::string uptime(const proto::node_status& c) {
  if (!c.uptime_ms) {
    return "-";
  }
  long long ms = *c.uptime_ms;
  if (ms < 60000) {
    return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
  }
  long long s = ms / 1000;
  if (s < 3600) {
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  }
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

// A backoff child's next start (a time of day in status) as a delay from now.
std::string next_start_in(std::int64_t wall_ms) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  return fmt::format("{:.1f}s",
                     static_cast<double>(std::max<std::int64_t>(0, wall_ms - now)) / 1000.0);
}

// How bad a child's state is, for a group's worst: running, starting,
// stopping, backoff, stopped (or unknown), failed.
int state_rank(const std::string& s) {
  static const char* const order[] = {"running", "starting", "stopping", "backoff"};
  for (int i = 0; i < 4; ++i) {
    if (s == order[i]) {
      return i;
    }
  }
  return s == "failed" ? 5 : 4;
}

// label padded to width columns (an id is ASCII, "×" is one column).
std::string pad(const std::string& label, std::size_t width) {
  std::size_t cols = 0;
  for (unsigned char ch : label) {
    cols += (ch & 0xC0) != 0x80 ? 1 : 0;  // count UTF-8 lead bytes only
  }
  return cols >= width ? label : label + std::string(width - cols, ' ');
}

void print_child(const proto::node_status& c, const std::string& shown);

// The children of n; with as_tree, the instances of an `instances: N`
// worker under one line of their own ("web ×4  running  4/4  restarts"),
// indented one level deeper.
void print_rows(const proto::node_status& n, int depth, bool as_tree) {
  std::string indent = as_tree ? std::string(static_cast<std::size_t>(depth) * 2, ' ') : "";
  for (std::size_t i = 0; i < n.children.size(); ++i) {
    const auto& c = n.children[i];
    if (!as_tree || !c.instance_of) {
      print_child(c, as_tree ? indent + c.id : c.path);
      if (c.is_supervisor) {
        print_rows(c, depth + 1, as_tree);
      }
      continue;
    }
    bool first = true;
    for (std::size_t k = 0; k < i && first; ++k) {
      first = n.children[k].instance_of != c.instance_of;
    }
    if (!first) {
      continue;  // listed under its group already
    }
    std::vector<const proto::node_status*> members;
    for (const auto& x : n.children) {
      if (x.instance_of == c.instance_of) {
        members.push_back(&x);
      }
    }
    std::stable_sort(members.begin(), members.end(), [](const auto* a, const auto* b) {
      return a->instance.value_or(0) < b->instance.value_or(0);
    });
    int running = 0;
    int restarts = 0;
    std::string worst = members.front()->state;
    std::vector<std::pair<std::string, int>> down;  // the instances that do not run, by state
    for (const auto* m : members) {
      running += m->state == "running" ? 1 : 0;
      restarts += m->restarts;
      if (state_rank(m->state) > state_rank(worst)) {
        worst = m->state;
      }
      if (m->state != "running") {
        auto it = std::find_if(down.begin(), down.end(),
                               [&](const auto& d) { return d.first == m->state; });
        if (it == down.end()) {
          down.emplace_back(m->state, 1);
        } else {
          ++it->second;
        }
      }
    }
    std::stable_sort(down.begin(), down.end(), [](const auto& a, const auto& b) {
      return state_rank(a.first) > state_rank(b.first);
    });
    std::string last;
    for (const auto& [st, k] : down) {
      last += fmt::format("{}{} {}", last.empty() ? "" : ", ", k, st);
    }
    // "×" in UTF-8, as supervisord / PM2 users read "web ×4".
    std::string label = fmt::format("{}{} \xc3\x97{}", indent, *c.instance_of, members.size());
    std::printf("%s %-9s %-8s %8d  %-8s %s\n", pad(label, 32).c_str(), worst.c_str(),
                fmt::format("{}/{}", running, members.size()).c_str(), restarts, "-",
                last.empty() ? "-" : last.c_str());
    for (const auto* m : members) {
      print_child(*m, indent + "  " + m->id);
    }
  }
}

void print_child(const proto::node_status& c, const std::string& shown) {
  std::string label = shown;
  bool sup = c.is_supervisor;
  if (sup) {
    label += "/";
  }
  std::string pid = c.pid ? std::to_string(*c.pid) : "-";
  std::string last = c.last_exit.value_or("-");
  if (sup) {
    std::string used;
    if (c.intensity) {
      used = fmt::format(" ({}/{} restarts in {}s)", c.intensity->used, c.intensity->max_restarts,
                         c.intensity->max_seconds);
    }
    last = c.strategy.value_or("") + used + (last == "-" ? "" : ", last exit " + last);
  }
  if (c.next_start_wall_ms) {
    last += fmt::format(", next start in {}", next_start_in(*c.next_start_wall_ms));
  }
  if (c.liveness_failures && *c.liveness_failures > 0) {
    // Probes failing now, before otpd ends the worker (status's liveness_failures).
    std::string live = fmt::format("liveness {}/{} failed", *c.liveness_failures,
                                   c.liveness_threshold.value_or(0));
    last = last == "-" ? live : last + ", " + live;
  }
  // What the child said over sd_notify (otpd has made it printable).
  if (c.notify_status) {
    last = (last == "-" ? std::string() : last + ", ") + "status: " + *c.notify_status;
  }
  std::printf("%-32s %-9s %-8s %8d  %-8s %s\n", label.c_str(), c.state.c_str(), pid.c_str(),
              c.restarts, uptime(c).c_str(), last.c_str());
}

// The request of a control command, from its command-line arguments.
struct cli_request {
  std::string cmd, id, sup, sig, binary;
  std::vector<std::string> args;
  bool follow = false;
  bool dry_run = false;
  pid_t pid = -1;

  [[nodiscard]] json encode() const {
    using verb = proto::child_request::verb;
    // paths: the daemon's status answer holds every child's path.
    // logs: the status answer says where each worker's log files are.
    if (cmd == "status" || cmd == "tree" || cmd == "paths" || cmd == "logs") {
      return proto::status_request{cmd == "tree"}.to_json();
    }
    for (verb v : {verb::start, verb::stop, verb::restart}) {
      if (cmd == proto::child_request::cmd_of(v)) {
        return proto::child_request{v, id}.to_json();
      }
    }
    if (cmd == proto::kill_request::cmd) {
      proto::kill_request k{id, {}};
      if (!sig.empty()) {
        k.signal = sig;
      }
      return k.to_json();
    }
    if (cmd == proto::start_child_request::cmd) {
      return proto::start_child_request{sup, args}.to_json();
    }
    if (cmd == proto::terminate_child_request::cmd) {
      return proto::terminate_child_request{sup, id}.to_json();
    }
    if (cmd == proto::events_request::cmd) {
      return proto::events_request{follow}.to_json();
    }
    if (cmd == proto::exit_reason_request::cmd) {
      return proto::exit_reason_request{pid}.to_json();
    }
    if (cmd == proto::reload_request::cmd) {
      return proto::reload_request{dry_run}.to_json();
    }
    if (cmd == proto::reexec_request::cmd) {
      return proto::reexec_request{binary}.to_json();
    }
    if (cmd == proto::shutdown_request::cmd) {
      return proto::shutdown_request{}.to_json();
    }
    return proto::reopen_logs_request{}.to_json();
  }
};

// One child path a line, supervisors with a trailing '/' (for shell completion).
void print_paths(const proto::node_status& n) {
  for (const auto& c : n.children) {
    std::printf("%s%s\n", c.path.c_str(), c.is_supervisor ? "/" : "");
    if (c.is_supervisor) {
      print_paths(c);
    }
  }
}

// MSG as JSON, or a bare word that is not JSON as a string; then msgpack.
std::string encode_message(const std::string& msg) {
  json j = proto::parse_json(msg);
  if (j.is_discarded()) {
    j = msg;
  }
  return proto::json_to_msgpack(j);
}

// A pid when NAME is all digits, else a registered name.
otpd::runtime::address address_of(const std::string& name) {
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
    return static_cast<pid_t>(std::stol(name));
  }
  return name;
}

int message_command(const std::string& cmd, const std::string& dir, const std::string& name,
                    const std::string& msg, int timeout_ms) {
  namespace rt = otpd::runtime;
  namespace core = otpd::core;
  if (auto r = rt::init({.runtime_dir = dir, .name = ""}); !r) {
    std::fprintf(stderr, "otpctl: unable to open a mailbox in %s: %s\n", dir.c_str(),
                 r.error().message().c_str());
    return exit_sys;
  }
  std::string body = encode_message(msg);
  if (cmd == "cast") {
    auto r = rt::send_message(address_of(name), rt::kind::cast, {}, body);
    if (!r) {
      if (r.error() == core::errc::noproc) {
        std::fprintf(stderr, "otpctl: no process named %s\n", name.c_str());
        return exit_no;
      }
      std::fprintf(stderr, "otpctl: unable to cast to %s: %s\n", name.c_str(),
                   r.error().message().c_str());
      return exit_no;
    }
    return exit_ok;
  }
  core::exit_reason why;
  auto r = rt::call_message(address_of(name), body, std::chrono::milliseconds(timeout_ms), &why);
  if (!r) {
    if (r.error() == core::errc::noproc) {
      std::fprintf(stderr, "otpctl: no process named %s\n", name.c_str());
    } else if (r.error() == core::errc::crashed) {
      std::fprintf(stderr, "otpctl: %s died during the call: %s\n", name.c_str(),
                   why.to_string().c_str());
    } else if (r.error() == core::errc::timeout) {
      std::fprintf(stderr, "otpctl: no reply from %s within %d ms\n", name.c_str(), timeout_ms);
    } else {
      std::fprintf(stderr, "otpctl: unable to call %s: %s\n", name.c_str(),
                   r.error().message().c_str());
    }
    return exit_no;
  }
  if (r->body.empty()) {
    std::printf("null\n");
    return exit_ok;
  }
  json reply = proto::json_from_msgpack(r->body);
  if (reply.is_discarded()) {
    // Valid msgpack that JSON cannot hold (e.g. a map with non-string keys,
    // bin or ext types): say so rather than print something else.
    std::fprintf(stderr, "otpctl: the reply of %s (%zu bytes of msgpack) has no JSON form\n",
                 name.c_str(), r->body.size());
    return exit_no;
  }
  std::printf("%s\n", proto::dump_json(reply).c_str());
  return exit_ok;
}

// An absolute path for BINARY: otpd's working directory is not ours.
std::string absolute_binary(const std::string& binary) {
  if (binary.empty() || binary.front() == '/') {
    return binary;
  }
  if (char* real = ::realpath(binary.c_str(), nullptr)) {
    std::string out = real;
    std::free(real);  // NOLINT(cppcoreguidelines-no-malloc): realpath's buffer
    return out;
  }
  char cwd[4096];
  return ::getcwd(cwd, sizeof cwd) != nullptr ? std::string(cwd) + "/" + binary : binary;
}

// `otpctl reexec`: asks for it (again for a few seconds while otpd is busy
// starting or stopping a child), then waits until otpd answers again and
// tells whether it runs the new binary: same pid, one more reexec.
int reexec_command(const std::string& dir, const cli_request& req, bool as_json) {
  using clock = std::chrono::steady_clock;
  auto call = [&dir](const json& request) -> otpd::core::Result<json> {
    control_client c;
    if (auto r = c.connect(dir); !r) {
      return r.fail();
    }
    return c.call(request);
  };
  auto before = call(proto::status_request{}.to_json());
  if (!before || !proto::is_ok(*before)) {
    std::fprintf(stderr, "otpctl: unable to reach otpd at %s\n",
                 otpd::supervisor::control_socket_path(dir).c_str());
    return exit_sys;
  }
  auto st = proto::status_reply::from_json(*before);
  auto busy_until = clock::now() + std::chrono::seconds(5);
  otpd::core::Result<json> reply = call(req.encode());
  while (reply && !proto::is_ok(*reply) && clock::now() < busy_until &&
         proto::error_reply::from_json(*reply).error.rfind("busy:", 0) == 0) {
    ::usleep(100 * 1000);
    reply = call(req.encode());
  }
  if (reply && !proto::is_ok(*reply)) {
    if (as_json) {
      std::printf("%s\n", reply->dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    }
    std::fprintf(stderr, "otpctl: %s\n", proto::error_reply::from_json(*reply).error.c_str());
    return exit_no;
  }
  // The exec closes the socket; the new process listens again once it has
  // taken the state over. An answer from the same process with the same
  // count means the exec failed (the old binary goes on).
  auto until = clock::now() + std::chrono::seconds(30);
  while (clock::now() < until) {
    auto now = call(proto::status_request{}.to_json());
    if (now && proto::is_ok(*now)) {
      auto after = proto::status_reply::from_json(*now);
      if (after.otpd_pid != st.otpd_pid) {
        std::fprintf(stderr, "otpctl: otpd is now pid %d, not %d: it did not survive the reexec\n",
                     after.otpd_pid, st.otpd_pid);
        return exit_no;
      }
      if (after.reexecs > st.reexecs) {
        if (as_json) {
          std::printf("%s\n",
                      proto::dump_json(proto::reexec_reply{after.binary, after.otpd_pid}.to_json())
                          .c_str());
        } else {
          std::printf("otpd pid %d re-executed %s\n", after.otpd_pid, after.binary.c_str());
        }
        return exit_ok;
      }
      std::fprintf(stderr, "otpctl: otpd did not re-execute (see its log): it runs %s\n",
                   st.binary.c_str());
      return exit_no;
    }
    ::usleep(50 * 1000);
  }
  std::fprintf(stderr, "otpctl: otpd did not answer within 30 s of the reexec\n");
  return exit_sys;
}

// events -f after otpd re-executed itself: connect to the new process and
// go on from the events after the "reexec" one (its recent ring holds the
// old process's events too). False when otpd does not come back.
bool follow_again(control_client& client, const std::string& dir) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    control_client c;
    if (c.connect(dir)) {
      auto reply = c.call(proto::events_request{true}.to_json());
      if (reply && proto::is_ok(*reply)) {
        const json& recent = (*reply)[proto::field::recent];
        std::size_t from = 0;
        for (std::size_t i = 0; i < recent.size(); ++i) {
          if (recent[i].value(proto::field::event, std::string()) == "reexec") {
            from = i + 1;
          }
        }
        for (std::size_t i = from; i < recent.size(); ++i) {
          std::printf("%s\n", proto::dump_json(recent[i]).c_str());
        }
        std::fflush(stdout);
        client = std::move(c);
        return true;
      }
    }
    ::usleep(50 * 1000);
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  otpd::core::cli::app app{"otpctl: control a running otpd"};
  app.require_subcommand(1);
  std::string dir;
  bool as_json = false;
  app.add("--runtime-dir", dir, "otpd's runtime dir (default: $OTPD_RUNTIME_DIR)");
  app.flag("--json", as_json, "print the daemon's JSON answer");

  cli_request req;
  std::string& id = req.id;
  std::string& sup = req.sup;
  std::vector<std::string>& args = req.args;
  bool& follow = req.follow;
  auto add = [&](const char* name, const char* help) {
    auto s = app.subcommand(name, help);
    s.flag("--json", as_json, "print the daemon's JSON answer");
    s.on_parsed([&req, name] { req.cmd = name; });
    return s;
  };
  add("status", "the children with path, state, pid, restarts, uptime, last exit");
  add("tree", "the supervision tree, indented");
  add("paths", "every child's path, one a line; supervisors end with '/'");
  for (const char* c : {"start", "stop", "restart"}) {
    add(c, "a child by id or path").add("id", id, "child id or path").required();
  }
  auto k = add("kill",
               "signal a worker's process (default SIGKILL), or kill a nested supervisor and its "
               "subtree; its supervisor reacts");
  k.add("id", id, "child id or path").required();
  k.add("-s,--signal", req.sig, "signal name or number");
  auto sc = add("start-child", "start a child of a simple_one_for_one supervisor");
  sc.add("supervisor", sup, "supervisor path ('/' for the root)").required();
  sc.add("args", args, "extra arguments appended to the template's command");
  auto tc = add("terminate-child", "stop and remove a simple_one_for_one child");
  tc.add("supervisor", sup, "supervisor path ('/' for the root)").required();
  tc.add("id", id, "child id, path or pid").required();
  add("reload", "re-read the config: start added, stop removed, restart changed children")
      .flag("-n,--dry-run", req.dry_run,
            "only print what a reload would do (the config is checked too)");
  add("events", "recent events; with -f, follow the stream")
      .flag("-f,--follow", follow, "keep printing events as they happen");
  add("shutdown", "stop every child in order and end otpd");
  add("reopen-logs", "reopen the children's log files (after an external logrotate)");
  add("reexec", "exec otpd's binary again in the same process: an upgrade that restarts no worker")
      .add("--binary", req.binary,
           "the otpd binary to exec (default: the path otpd was started from)");
  std::string target, msg;
  int timeout_ms = 5000;
  auto call = add("call", "a GenServer call from the shell; prints the reply as JSON");
  call.add("name", target, "registered name (or pid) of the server").required();
  call.add("msg", msg, "the request: JSON, or a bare word sent as a string").required();
  call.add("--timeout", timeout_ms, "ms to wait for the reply (default 5000)").positive();
  auto cast = add("cast", "a GenServer cast from the shell (no reply)");
  cast.add("name", target, "registered name (or pid) of the server").required();
  cast.add("msg", msg, "the message: JSON, or a bare word sent as a string").required();
  pid_t& pid = req.pid;
  add("exit-reason", "how a recent child process ended").add("pid", pid, "process id").required();
  otpd::observer::top_options top;
  auto t = add("top", "a live view of the tree (CPU, memory, exits); plain lines when not a tty");
  t.flag("-f,--follow", top.follow, "not a tty: after the table, a line per event");
  t.flag("--plain", top.force_plain, "plain lines even on a terminal");
  add("web", "the URL of otpd-web, with its access token");
  otpd::otpctl::logs_options logs_opts;
  auto lg = add("logs", "the tail of a worker's captured output (a file output); -f follows it");
  lg.add("id", logs_opts.id, "child id or path").required();
  lg.add("-n,--lines", logs_opts.lines, "how many lines (default 10)").non_negative();
  lg.flag("-f,--follow", logs_opts.follow,
          "keep printing what is appended, across rotations, until interrupted");
  lg.flag("--stderr", logs_opts.stderr_stream, "stderr's log file instead of stdout's");

  if (auto rc = app.parse(argc, argv)) {
    return *rc == 0 ? exit_ok : exit_usage;
  }
  const std::string cmd = req.cmd;

  dir = otpd::supervisor::pick_runtime_dir(dir, "");
  if (cmd == "call" || cmd == "cast") {
    return message_command(cmd, dir, target, msg, timeout_ms);
  }
  if (cmd == "top") {
    top.runtime_dir = dir;
    return otpd::observer::run_top(top);
  }
  if (cmd == "web") {
    auto url = otpd::observer::web_login_url(dir);
    if (!url) {
      std::fprintf(stderr, "otpctl: %s\n", url.message().c_str());
      return exit_no;
    }
    std::printf("%s\n", url->c_str());
    return exit_ok;
  }
  if (cmd == proto::reexec_request::cmd) {
    req.binary = absolute_binary(req.binary);
    return reexec_command(dir, req, as_json);
  }
  control_client client;
  if (auto r = client.connect(dir); !r) {
    if (r.error() == otpd::core::errc::access_denied) {
      std::fprintf(stderr,
                   "otpctl: refusing to talk to %s: it is served by uid %u (pid %d), neither root "
                   "nor uid %u (us); another user's socket?\n",
                   otpd::supervisor::control_socket_path(dir).c_str(),
                   static_cast<unsigned>(client.peer_uid()), client.peer_pid(),
                   static_cast<unsigned>(::geteuid()));
      return exit_sys;
    }
    std::fprintf(stderr,
                 "otpctl: unable to connect to otpd at %s: %s; is otpd running (check "
                 "--runtime-dir or OTPD_RUNTIME_DIR)?\n",
                 otpd::supervisor::control_socket_path(dir).c_str(), r.error().message().c_str());
    return exit_sys;
  }
  auto reply = client.call(req.encode());
  if (!reply) {
    if (reply.error() == otpd::core::errc::malformed) {
      std::fprintf(stderr, "otpctl: malformed answer from otpd\n");
    } else {
      std::fprintf(stderr, "otpctl: otpd closed the connection: %s\n",
                   reply.error().message().c_str());
    }
    return exit_sys;
  }
  const json& ans = *reply;
  if (!proto::is_ok(ans)) {
    if (as_json) {
      std::printf("%s\n", proto::dump_json(ans).c_str());
    }
    std::fprintf(stderr, "otpctl: %s\n", proto::error_reply::from_json(ans).error.c_str());
    return exit_no;
  }
  if (cmd == proto::events_request::cmd) {
    // The events as otpd sent them, fields it may add later included.
    for (const auto& e : ans[proto::field::recent]) {
      std::printf("%s\n", proto::dump_json(e).c_str());
    }
    std::fflush(stdout);
    bool reexec = false;  // the last event said otpd execs itself: it comes back
    while (follow) {
      auto ev = client.read_line();
      if (!ev) {
        if (reexec && follow_again(client, dir)) {
          reexec = false;
          continue;
        }
        return exit_ok;  // otpd went away: the stream is over
      }
      std::printf("%s\n", ev->c_str());
      std::fflush(stdout);
      json e = proto::parse_json(*ev);
      reexec = e.is_object() && e.value(proto::field::event, std::string()) == "reexec";
    }
    return exit_ok;
  }
  if (cmd == "logs") {
    return otpd::otpctl::logs(proto::status_reply::from_json(ans), logs_opts);
  }
  if (as_json) {
    std::printf("%s\n", proto::dump_json(ans).c_str());
    return exit_ok;
  }
  if (cmd == "status" || cmd == "tree") {
    auto st = proto::status_reply::from_json(ans);
    std::string used;
    if (st.root.intensity) {
      used = fmt::format(" ({}/{} restarts in {}s)", st.root.intensity->used,
                         st.root.intensity->max_restarts, st.root.intensity->max_seconds);
    }
    std::printf("node %s (otpd pid %d), root %s%s, %s\n", st.node.c_str(), st.otpd_pid,
                st.root.strategy.value_or("").c_str(), used.c_str(), st.root.state.c_str());
    std::printf("%-32s %-9s %-8s %8s  %-8s %s\n", "PATH", "STATE", "PID", "RESTARTS", "UPTIME",
                "LAST EXIT");
    print_rows(st.root, 0, cmd == "tree");
  } else if (cmd == "paths") {
    print_paths(proto::status_reply::from_json(ans).root);
  } else if (cmd == proto::reload_request::cmd) {
    auto r = proto::reload_reply::from_json(ans);
    auto list = [](const std::vector<std::string>& paths) {
      std::string s;
      for (const auto& p : paths) {
        s += (s.empty() ? "" : " ") + p;
      }
      return s.empty() ? std::string("-") : s;
    };
    const char* would = r.dry_run ? "would be " : "";
    std::printf("%sadded: %s\n%sremoved: %s\n%schanged: %s\n", would, list(r.added).c_str(), would,
                list(r.removed).c_str(), would, list(r.changed).c_str());
    for (const auto& [path, keys] : r.changed_keys) {
      std::printf("  %s: %s\n", path.c_str(), list(keys).c_str());
    }
    std::printf("untouched: %s\n", list(r.untouched).c_str());
  } else if (cmd == proto::start_child_request::cmd) {
    std::printf("%s\n", proto::start_child_reply::from_json(ans).path.c_str());
  } else if (cmd == proto::exit_reason_request::cmd) {
    auto r = proto::exit_reason_reply::from_json(ans);
    if (!r.reason) {
      std::fprintf(stderr, "otpctl: no recent exit of pid %d\n", pid);
      return exit_no;
    }
    std::printf("%s\n", ans[proto::field::reason].get<std::string>().c_str());
  }
  return exit_ok;
}

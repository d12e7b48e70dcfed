// otpctl: talks to a running otpd over its control socket.
// Exit codes: 0 ok, 1 negative answer, 100 usage error, 111 system error.
// `call` and `cast` do not go through otpd: they are messages from this
// process's own mailbox (the process runtime) to a registered worker.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <otpd/core/result.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/supervisor/control_client.hpp>
#include <otpd/supervisor/daemon.hpp>

namespace {

using json = nlohmann::json;
using otpd::supervisor::control_client;

constexpr int exit_ok = 0;
constexpr int exit_no = 1;
constexpr int exit_usage = 100;
constexpr int exit_sys = 111;

std::string uptime(const json& c) {
  if (!c.contains("uptime_ms")) {
    return "-";
  }
  long long ms = c["uptime_ms"].get<long long>();
  if (ms < 60000) {
    return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
  }
  long long s = ms / 1000;
  if (s < 3600) {
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  }
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

void print_rows(const json& n, int depth, bool as_tree) {
  for (const auto& c : n["children"]) {
    std::string label =
        as_tree ? std::string(static_cast<std::size_t>(depth) * 2, ' ') + c["id"].get<std::string>()
                : c["path"].get<std::string>();
    bool sup = c["type"] == "supervisor";
    if (sup) {
      label += "/";
    }
    std::string pid = c["pid"].is_null() ? "-" : std::to_string(c["pid"].get<int>());
    std::string last = c.value("last_exit", std::string("-"));
    if (sup) {
      last = c["strategy"].get<std::string>() + (last == "-" ? "" : ", last exit " + last);
    }
    std::printf("%-32s %-9s %-8s %8d  %-8s %s\n", label.c_str(),
                c["state"].get<std::string>().c_str(), pid.c_str(), c["restarts"].get<int>(),
                uptime(c).c_str(), last.c_str());
    if (sup) {
      print_rows(c, depth + 1, as_tree);
    }
  }
}

// One child path a line, supervisors with a trailing '/' (for shell completion).
void print_paths(const json& n) {
  for (const auto& c : n["children"]) {
    bool sup = c["type"] == "supervisor";
    std::printf("%s%s\n", c["path"].get<std::string>().c_str(), sup ? "/" : "");
    if (sup) {
      print_paths(c);
    }
  }
}

// MSG as JSON, or a bare word that is not JSON as a string; then msgpack.
std::string encode_message(const std::string& msg) {
  json j = json::parse(msg, nullptr, false);
  if (j.is_discarded()) {
    j = msg;
  }
  auto bytes = json::to_msgpack(j);
  return {bytes.begin(), bytes.end()};
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
  json reply = json::from_msgpack(r->body, true, false);
  if (reply.is_discarded()) {
    // Valid msgpack that JSON cannot hold (e.g. a map with non-string keys,
    // bin or ext types): say so rather than print something else.
    std::fprintf(stderr, "otpctl: the reply of %s (%zu bytes of msgpack) has no JSON form\n",
                 name.c_str(), r->body.size());
    return exit_no;
  }
  std::printf("%s\n", reply.dump().c_str());
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"otpctl: control a running otpd"};
  app.require_subcommand(1);
  std::string dir;
  bool as_json = false;
  app.add_option("--runtime-dir", dir, "otpd's runtime dir (default: $OTPD_RUNTIME_DIR)");
  app.add_flag("--json", as_json, "print the daemon's JSON answer");

  json req;
  std::string id, sup, sig;
  std::vector<std::string> args;
  bool follow = false;
  auto add = [&](const char* name, const char* help) {
    auto* s = app.add_subcommand(name, help);
    s->add_flag("--json", as_json, "print the daemon's JSON answer");
    s->callback([&req, name] { req["cmd"] = name; });
    return s;
  };
  add("status", "the children with path, state, pid, restarts, uptime, last exit");
  add("tree", "the supervision tree, indented");
  add("paths", "every child's path, one a line; supervisors end with '/'");
  for (const char* c : {"start", "stop", "restart"}) {
    add(c, "a child by id or path")->add_option("id", id, "child id or path")->required();
  }
  auto* k = add("kill", "signal a worker's process (default SIGKILL); its supervisor reacts");
  k->add_option("id", id, "child id or path")->required();
  k->add_option("-s,--signal", sig, "signal name or number");
  auto* sc = add("start-child", "start a child of a simple_one_for_one supervisor");
  sc->add_option("supervisor", sup, "supervisor path ('/' for the root)")->required();
  sc->add_option("args", args, "extra arguments appended to the template's command");
  auto* tc = add("terminate-child", "stop and remove a simple_one_for_one child");
  tc->add_option("supervisor", sup, "supervisor path ('/' for the root)")->required();
  tc->add_option("id", id, "child id, path or pid")->required();
  add("reload", "re-read the config: start added, stop removed, restart changed children");
  add("events", "recent events; with -f, follow the stream")
      ->add_flag("-f,--follow", follow, "keep printing events as they happen");
  add("shutdown", "stop every child in order and end otpd");
  add("reopen-logs", "reopen the children's log files (after an external logrotate)");
  std::string target, msg;
  int timeout_ms = 5000;
  auto* call = add("call", "a GenServer call from the shell; prints the reply as JSON");
  call->add_option("name", target, "registered name (or pid) of the server")->required();
  call->add_option("msg", msg, "the request: JSON, or a bare word sent as a string")->required();
  call->add_option("--timeout", timeout_ms, "ms to wait for the reply (default 5000)")
      ->check(CLI::PositiveNumber);
  auto* cast = add("cast", "a GenServer cast from the shell (no reply)");
  cast->add_option("name", target, "registered name (or pid) of the server")->required();
  cast->add_option("msg", msg, "the message: JSON, or a bare word sent as a string")->required();
  pid_t pid = -1;
  add("exit-reason", "how a recent child process ended")
      ->add_option("pid", pid, "process id")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }
  const std::string cmd = req["cmd"];
  if (!id.empty()) {
    req["id"] = id;
  }
  if (cmd == "kill" && !sig.empty()) {
    req["signal"] = sig;
  }
  if (cmd == "start-child" || cmd == "terminate-child") {
    req["supervisor"] = sup;
    if (cmd == "start-child") {
      req["args"] = args;
    }
  }
  if (cmd == "events") {
    req["follow"] = follow;
  }
  if (cmd == "exit-reason") {
    req["pid"] = pid;
  }

  if (cmd == "paths") {
    req["cmd"] = "status";  // the daemon's status answer holds the paths
  }

  dir = otpd::supervisor::pick_runtime_dir(dir, "");
  if (cmd == "call" || cmd == "cast") {
    return message_command(cmd, dir, target, msg, timeout_ms);
  }
  control_client client;
  if (auto r = client.connect(dir); !r) {
    std::fprintf(stderr,
                 "otpctl: unable to connect to otpd at %s: %s; is otpd running (check "
                 "--runtime-dir or OTPD_RUNTIME_DIR)?\n",
                 otpd::supervisor::control_socket_path(dir).c_str(), r.error().message().c_str());
    return exit_sys;
  }
  auto line = client.request(req.dump());
  if (!line) {
    std::fprintf(stderr, "otpctl: otpd closed the connection: %s\n",
                 line.error().message().c_str());
    return exit_sys;
  }
  json ans = json::parse(*line, nullptr, false);
  if (ans.is_discarded()) {
    std::fprintf(stderr, "otpctl: malformed answer from otpd\n");
    return exit_sys;
  }
  if (!ans.value("ok", false)) {
    if (as_json) {
      std::printf("%s\n", ans.dump().c_str());
    }
    std::fprintf(stderr, "otpctl: %s\n", ans.value("error", std::string("refused")).c_str());
    return exit_no;
  }
  if (cmd == "events") {
    for (const auto& e : ans["recent"]) {
      std::printf("%s\n", e.dump().c_str());
    }
    std::fflush(stdout);
    while (follow) {
      auto ev = client.read_line();
      if (!ev) {
        return exit_ok;  // otpd went away: the stream is over
      }
      std::printf("%s\n", ev->c_str());
      std::fflush(stdout);
    }
    return exit_ok;
  }
  if (as_json) {
    std::printf("%s\n", ans.dump().c_str());
    return exit_ok;
  }
  if (cmd == "status" || cmd == "tree") {
    std::printf("node %s (otpd pid %d), root %s, %s\n", ans["node"].get<std::string>().c_str(),
                ans["otpd_pid"].get<int>(), ans["strategy"].get<std::string>().c_str(),
                ans["state"].get<std::string>().c_str());
    std::printf("%-32s %-9s %-8s %8s  %-8s %s\n", "PATH", "STATE", "PID", "RESTARTS", "UPTIME",
                "LAST EXIT");
    print_rows(ans, 0, cmd == "tree");
  } else if (cmd == "paths") {
    print_paths(ans);
  } else if (cmd == "reload") {
    auto list = [&](const char* k) {
      std::string s;
      for (const auto& p : ans[k]) {
        s += (s.empty() ? "" : " ") + p.get<std::string>();
      }
      return s.empty() ? std::string("-") : s;
    };
    std::printf("added: %s\nremoved: %s\nchanged: %s\n", list("added").c_str(),
                list("removed").c_str(), list("changed").c_str());
  } else if (cmd == "start-child") {
    std::printf("%s\n", ans["path"].get<std::string>().c_str());
  } else if (cmd == "exit-reason") {
    if (!ans.value("found", false)) {
      std::fprintf(stderr, "otpctl: no recent exit of pid %d\n", pid);
      return exit_no;
    }
    std::printf("%s\n", ans["reason"].get<std::string>().c_str());
  }
  return exit_ok;
}

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/log.hpp>
#include <otpd/supervisor/config.hpp>

namespace otpd::supervisor {

const char* to_string(strategy s) noexcept {
  switch (s) {
    case strategy::one_for_one:
      return "one_for_one";
    case strategy::one_for_all:
      return "one_for_all";
    case strategy::rest_for_one:
      return "rest_for_one";
    case strategy::simple_one_for_one:
      return "simple_one_for_one";
  }
  return "?";
}

const char* to_string(restart_type r) noexcept {
  switch (r) {
    case restart_type::permanent:
      return "permanent";
    case restart_type::transient:
      return "transient";
    case restart_type::temporary:
      return "temporary";
  }
  return "?";
}

namespace {

// Thrown inside the parser only; load_config turns it into a value.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool all_of_chars(const std::string& s, bool allow_dot) {
  return std::all_of(s.begin(), s.end(), [allow_dot](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || (allow_dot && c == '.');
  });
}

// A registered name as the runtime's register_name takes it
// (runtime/src/names.cpp: letters, digits, '_', '-', '.', at most 64), and
// not starting with '.': the names directory keeps its ".new.<pid>" files.
// Child ids follow the same rule: they are path components (root/a/b) in
// otpctl's arguments, events and logs.
bool valid_name(const std::string& s) {
  return !s.empty() && s.size() <= config_limits::name_chars && s[0] != '.' &&
         all_of_chars(s, true);
}

// node.name becomes OTPD_NODE and the prefix of the node's shm segment
// names: shm_table's valid_node_name (no '.'), else the tables silently fall
// back to the node "default".
bool valid_node_name(const std::string& s) {
  return !s.empty() && s.size() <= config_limits::name_chars && all_of_chars(s, false);
}

class parser {
 public:
  parser(std::string file, std::string base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& what) {
    const YAML::Mark m = at.Mark();
    std::string where = file_;
    if (m.line >= 0) {
      where += fmt::format(":{}:{}", m.line + 1, m.column + 1);
    }
    // A key may hold a NUL byte ("\0" in a quoted key): shown escaped, as
    // what() would end the message there.
    std::string shown;
    for (char c : key.empty() ? std::string("(top)") : key) {
      shown += c == '\0' ? std::string("\\0") : std::string(1, c);
    }
    throw config_error(fmt::format("{}: {}: {}", where, shown, what));
  }

  void check_keys(const YAML::Node& map, const std::string& key,
                  std::span<const std::string_view> allowed) {
    if (!map.IsMap()) {
      fail(map, key, "expected a mapping");
    }
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      std::string k = it->first.Scalar();
      if (!seen.insert(k).second) {
        // yaml-cpp keeps both and a lookup sees the first: say so instead.
        fail(it->first, join(key, k), "duplicate key");
      }
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        std::string list;
        for (const auto& a : std::set<std::string_view>(allowed.begin(), allowed.end())) {
          list += (list.empty() ? "" : ", ") + std::string(a);
        }
        fail(it->first, join(key, k), "unknown key (expected one of " + list + ")");
      }
    }
  }

  // Walks the whole document before anything else looks at it. yaml-cpp keeps
  // an alias as the anchored node itself, shared, so a walk expands it: a
  // kilobyte of nested aliases (billion laughs) is 10^9 nodes to a walk.
  // Counting every node visited, each use of an alias included, bounds this
  // walk and so every later one (the parser looks at each node a bounded
  // number of times). Aliases themselves stay allowed: sharing an env or a
  // backoff mapping between children is what they are for.
  void check_shape(const YAML::Node& n, int depth, std::size_t& budget) {
    if (depth > config_limits::max_depth) {
      fail(n, "(document)", fmt::format("nested deeper than {} levels", config_limits::max_depth));
    }
    if (budget == 0) {
      fail(n, "(document)",
           fmt::format("more than {} YAML nodes (each use of an alias counts its whole node)",
                       config_limits::max_nodes));
    }
    --budget;
    if (n.IsMap()) {
      for (auto it = n.begin(); it != n.end(); ++it) {
        check_shape(it->first, depth + 1, budget);
        check_shape(it->second, depth + 1, budget);
      }
    } else if (n.IsSequence()) {
      for (auto it = n.begin(); it != n.end(); ++it) {
        check_shape(*it, depth + 1, budget);
      }
    }
  }

  static std::string join(const std::string& base, const std::string& k) {
    return base.empty() ? k : base + "." + k;
  }

  // Every string the config hands on (argv, env, paths, names) must survive
  // the trip through C APIs: a "\0" escape would silently cut it short.
  std::string scalar(const YAML::Node& n, const std::string& key) {
    if (!n.IsScalar()) {
      fail(n, key, "expected a string");
    }
    if (n.Scalar().find('\0') != std::string::npos) {
      fail(n, key, "contains a NUL byte");
    }
    return n.Scalar();
  }

  // Decimal digits with an optional '-': strtol alone would also take
  // leading blanks and a '+', and say nothing useful about overflow.
  long integer(const YAML::Node& n, const std::string& key, long min, long max) {
    std::string s = scalar(n, key);
    std::size_t digits = (!s.empty() && s[0] == '-') ? 1 : 0;
    bool well_formed =
        s.size() > digits && std::all_of(s.begin() + static_cast<long>(digits), s.end(),
                                         [](char c) { return c >= '0' && c <= '9'; });
    if (!well_formed) {
      fail(n, key, "expected an integer, got '" + s + "'");
    }
    errno = 0;
    long v = std::strtol(s.c_str(), nullptr, 10);
    if (errno == ERANGE || v < min || v > max) {
      fail(n, key, fmt::format("expected an integer in [{}, {}], got {}", min, max, s));
    }
    return v;
  }

  // A finite number in [min, max]: "nan" compares false with everything, so
  // a plain range check would let it (and so a NaN backoff) through.
  double real(const YAML::Node& n, const std::string& key, double min, double max) {
    std::string s = scalar(n, key);
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v) || errno == ERANGE || v < min || v > max) {
      fail(n, key, fmt::format("expected a number in [{}, {}], got '{}'", min, max, s));
    }
    return v;
  }

  bool boolean(const YAML::Node& n, const std::string& key) {
    std::string s = scalar(n, key);
    if (s == "true" || s == "yes" || s == "on") {
      return true;
    }
    if (s == "false" || s == "no" || s == "off") {
      return false;
    }
    fail(n, key, "expected true or false, got '" + s + "'");
  }

  // "10M", "512K", "1G" or a plain number of bytes, at most config_limits::size_bytes:
  // digits only (strtoull would take "-1" as 2^64-1), and the unit's
  // multiplication checked for overflow.
  std::uint64_t size(const YAML::Node& n, const std::string& key) {
    const std::string what =
        fmt::format("expected a positive size such as 1048576, 512K or 10M (at most {}G)",
                    config_limits::size_bytes >> 30);
    std::string s = scalar(n, key);
    std::uint64_t mult = 1;
    if (!s.empty()) {
      char last = s.back();
      if (last == 'K' || last == 'k') {
        mult = 1024;
      } else if (last == 'M' || last == 'm') {
        mult = 1024 * 1024;
      } else if (last == 'G' || last == 'g') {
        mult = 1024ull * 1024 * 1024;
      }
      if (mult != 1) {
        s.pop_back();
      }
    }
    if (s.empty() || s.size() > 19 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      fail(n, key, what);
    }
    std::uint64_t v = std::stoull(s);  // < 10^19: fits
    if (v == 0 || v > config_limits::size_bytes / mult) {
      fail(n, key, what);
    }
    return v * mult;
  }

  template <class E>
  E choice(const YAML::Node& n, const std::string& key,
           const std::vector<std::pair<const char*, E>>& options) {
    std::string s = n.IsScalar() ? n.Scalar() : std::string();
    for (const auto& [name, value] : options) {
      if (s == name) {
        return value;
      }
    }
    std::string list;
    for (std::size_t i = 0; i < options.size(); ++i) {
      list += options[i].first;
      if (i + 2 < options.size()) {
        list += ", ";
      } else if (i + 2 == options.size()) {
        list += options.size() > 2 ? ", or " : " or ";
      }
    }
    fail(n, key, "expected one of " + list);
  }

  env_list env(const YAML::Node& n, const std::string& key) {
    if (!n.IsMap()) {
      fail(n, key, "expected a mapping of NAME: value");
    }
    env_list out;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = it->first.Scalar();
      if (k.empty() || k.find_first_of(std::string("=\0", 2)) != std::string::npos) {
        fail(it->first, join(key, k), "bad environment variable name");
      }
      out.emplace_back(k, scalar(it->second, join(key, k)));
    }
    return out;
  }

  // node.path: a list of directories, or one string of them separated by ':'.
  std::vector<std::string> search_path(const YAML::Node& n, const std::string& key) {
    std::vector<std::string> dirs;
    auto add = [&](const YAML::Node& at, const std::string& k, const std::string& d) {
      if (d.empty()) {
        fail(at, k, "an empty directory");
      }
      dirs.push_back(resolve(d));
    };
    if (n.IsScalar()) {
      std::stringstream ss(n.Scalar());
      for (std::string d; std::getline(ss, d, ':');) {
        add(n, key, d);
      }
    } else if (n.IsSequence()) {
      for (std::size_t i = 0; i < n.size(); ++i) {
        std::string k = fmt::format("{}[{}]", key, i);
        add(n[i], k, scalar(n[i], k));
      }
    } else {
      fail(n, key, "expected a list of directories");
    }
    return dirs;
  }

  std::vector<std::string> argv(const YAML::Node& n, const std::string& key, bool shell) {
    std::vector<std::string> out;
    if (n.IsScalar()) {
      if (!shell) {
        fail(n, key,
             "a command string needs 'shell: true'; otherwise give a list such as [prog, arg]");
      }
      out = {"/bin/sh", "-c", n.Scalar()};
    } else if (n.IsSequence()) {
      if (shell) {
        fail(n, key, "with 'shell: true' the command is one string");
      }
      for (std::size_t i = 0; i < n.size(); ++i) {
        out.push_back(scalar(n[i], fmt::format("{}[{}]", key, i)));
      }
    } else {
      fail(n, key, "expected a list of arguments");
    }
    if (out.empty() || out[0].empty()) {
      fail(n, key, "the command is empty");
    }
    return out;
  }

  // Resolves argv[0] to the file the daemon will execute and checks that it
  // is executable, so that a typo fails the config instead of a crash loop.
  // A bare name is looked up in node.path, then in the directory of the otpd
  // binary (so a config naming otpd's own workers works without PATH set up),
  // then in PATH: a config means the same thing whoever runs it.
  void resolve_program(const YAML::Node& at, const std::string& key, worker_spec& w,
                       const std::vector<std::string>& node_path) {
    const std::string& prog = w.argv[0];
    auto executable = [](const std::string& p) {
      struct stat st {};
      return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
    };
    if (prog.find('/') != std::string::npos) {
      std::string full = prog;
      if (prog[0] != '/' && !w.cwd.empty()) {
        full = w.cwd + "/" + prog;
      }
      struct stat st {};
      if (::stat(full.c_str(), &st) != 0) {
        fail(at, key, "command not found: " + prog);
      }
      if (!executable(full)) {
        fail(at, key, "command is not executable: " + prog);
      }
      w.program = prog;  // relative to the child's cwd, as written
      w.program_found_in = "as written";
      return;
    }
    struct place {
      std::string dir;
      const char* what;
    };
    std::vector<place> places;
    for (const auto& d : node_path) {
      places.push_back({d, "node.path"});
    }
    if (std::string self = self_dir(); !self.empty()) {
      places.push_back({self, "otpd's directory"});
    }
    const char* path_env = std::getenv("PATH");
    std::stringstream ss(path_env != nullptr ? path_env : "/usr/bin:/bin");
    for (std::string dir; std::getline(ss, dir, ':');) {
      places.push_back({dir.empty() ? "." : dir, "PATH"});
    }
    bool exists = false;
    for (const auto& p : places) {
      std::string full = p.dir + "/" + prog;
      if (executable(full)) {
        w.program = full;
        w.program_found_in = p.what;
        return;
      }
      struct stat st {};
      exists = exists || ::stat(full.c_str(), &st) == 0;
    }
    fail(at, key,
         exists ? "command is not executable: " + prog
                : "command not found in node.path, otpd's directory or PATH: " + prog);
  }

  // The directory of the running binary (otpd, or a tool that loads configs).
  static std::string self_dir() {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : exe.parent_path().string();
  }

  std::string resolve(const std::string& p) const {
    if (p.empty() || p[0] == '/') {
      return p;
    }
    return base_dir_ + "/" + p;
  }

  // A scalar (inherit, null, inherit_prefixed or a file path) or a mapping:
  // {file: PATH, max_size, keep, rotate, timestamps} or {to: KIND, timestamps}.
  output_spec output(const YAML::Node& n, const std::string& key) {
    output_spec o;
    if (n.IsScalar()) {
      std::string s = n.Scalar();
      if (s.empty()) {
        fail(n, key,
             "expected inherit, null, inherit_prefixed, journald, syslog, a file path or {file: "
             "PATH, max_size, keep}");
      }
      if (!output_keyword(s, o)) {
        o.kind = output_kind::file;
        o.path = resolve(s);
      }
      return o;
    }
    if (n.IsNull()) {
      o.kind = output_kind::null;
      return o;
    }
    check_keys(n, key, config_keys::output);
    if (n["to"]) {
      if (n["file"]) {
        fail(n["to"], join(key, "to"), "give either file or to, not both");
      }
      // to: null is YAML's null, not the word.
      std::string to = n["to"].IsNull() ? "null" : scalar(n["to"], join(key, "to"));
      if (!output_keyword(to, o)) {
        fail(n["to"], join(key, "to"),
             "expected inherit, null, inherit_prefixed, journald or syslog, got " + to);
      }
      for (const char* k : {"max_size", "keep", "rotate"}) {
        if (n[k]) {
          fail(n[k], join(key, k), "only for a file output (file: PATH)");
        }
      }
    } else {
      if (!n["file"]) {
        fail(n, join(key, "file"), "missing (the log file path, or to: for another output)");
      }
      o.kind = output_kind::file;
      o.path = resolve(scalar(n["file"], join(key, "file")));
    }
    if (n["max_size"]) {
      o.max_bytes = size(n["max_size"], join(key, "max_size"));
    }
    if (n["keep"]) {
      o.keep = static_cast<int>(integer(n["keep"], join(key, "keep"), 1, 100));
    }
    if (n["rotate"]) {
      o.rotate = boolean(n["rotate"], join(key, "rotate"));
    }
    if (n["timestamps"]) {
      o.timestamps = boolean(n["timestamps"], join(key, "timestamps"));
    }
    return o;
  }

  // An output named by a word; false when s is none (a file path then).
  static bool output_keyword(const std::string& s, output_spec& o) {
    if (s == "inherit") {
      o.kind = output_kind::inherit;
    } else if (s == "null") {
      o.kind = output_kind::null;
    } else if (s == "inherit_prefixed") {
      o.kind = output_kind::inherit_prefixed;
      o.timestamps = false;
    } else if (s == "journald" || s == "syslog") {
      // They stamp each entry themselves.
      o.kind = s == "journald" ? output_kind::journald : output_kind::syslog;
      o.timestamps = false;
    } else {
      return false;
    }
    return true;
  }

  readiness_spec readiness(const YAML::Node& n, const std::string& key) {
    readiness_spec r;
    if (n.IsScalar()) {
      r.kind = choice<readiness_kind>(
          n, key, {{"exec", readiness_kind::exec}, {"notify", readiness_kind::notify}});
      return r;
    }
    check_keys(n, key, config_keys::readiness);
    if (n.size() < 1 || (n["interval"] && n.size() < 2)) {
      fail(n, key, "expected exec, notify, {tcp: HOST:PORT}, {unix: PATH} or {command: ...}");
    }
    if (n["interval"]) {
      r.probe_interval_ms =
          static_cast<int>(integer(n["interval"], join(key, "interval"), 1, 60000));
    }
    if (n["tcp"]) {
      r.kind = readiness_kind::tcp;
      std::string s = scalar(n["tcp"], join(key, "tcp"));
      auto colon = s.rfind(':');
      std::string digits = colon == std::string::npos ? std::string() : s.substr(colon + 1);
      bool numeric =
          !digits.empty() && digits.size() <= 5 &&
          std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      long port = numeric ? std::stol(digits) : 0;
      if (port <= 0 || port > 65535) {
        fail(n["tcp"], join(key, "tcp"), "expected HOST:PORT, e.g. 127.0.0.1:6379");
      }
      r.host = colon == 0 ? "127.0.0.1" : s.substr(0, colon);
      r.port = static_cast<int>(port);
    } else if (n["unix"]) {
      r.kind = readiness_kind::unix_socket;
      r.path = resolve(scalar(n["unix"], join(key, "unix")));
    } else if (n["command"]) {
      r.kind = readiness_kind::command;
      const YAML::Node& c = n["command"];
      r.command = c.IsScalar() ? std::vector<std::string>{"/bin/sh", "-c", c.Scalar()}
                               : argv(c, join(key, "command"), false);
    }
    return r;
  }

  shutdown_spec shutdown(const YAML::Node& n, const std::string& key) {
    shutdown_spec s;
    std::string v = scalar(n, key);
    if (v == "brutal_kill") {
      s.kind = shutdown_kind::brutal_kill;
    } else if (v == "infinity") {
      s.kind = shutdown_kind::infinity;
    } else if (!v.empty() && std::isdigit(static_cast<unsigned char>(v[0])) != 0) {
      s.timeout_ms = static_cast<int>(integer(n, key, 0, 86400000));
    } else {
      fail(n, key, "expected milliseconds, brutal_kill or infinity");
    }
    return s;
  }

  backoff_spec backoff(const YAML::Node& n, const std::string& key) {
    backoff_spec b;
    check_keys(n, key, config_keys::backoff);
    b.enabled = true;
    if (n["initial"]) {
      b.initial_ms = static_cast<int>(integer(n["initial"], join(key, "initial"), 0, 3600000));
    }
    if (n["max"]) {
      b.max_ms = static_cast<int>(integer(n["max"], join(key, "max"), 0, 3600000));
    }
    if (n["factor"]) {
      b.factor = real(n["factor"], join(key, "factor"), 1.0, 100.0);
    }
    if (n["jitter"]) {
      b.jitter = real(n["jitter"], join(key, "jitter"), 0.0, 1.0);
    }
    if (n["reset_after"]) {
      b.reset_after_ms =
          static_cast<int>(integer(n["reset_after"], join(key, "reset_after"), 0, 86400000));
    }
    if (b.max_ms < b.initial_ms) {
      fail(n, key, "max must not be below initial");
    }
    return b;
  }

  static std::string fingerprint(const YAML::Node& n) {
    YAML::Emitter e;
    e << YAML::Flow;
    e << YAML::BeginMap;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = it->first.Scalar();
      if (k == "children" || k == "template") {
        continue;
      }
      e << YAML::Key << k << YAML::Value << it->second;
    }
    e << YAML::EndMap;
    return e.c_str();
  }

  void supervisor(const YAML::Node& n, const std::string& key, child_spec& c) {
    c.is_supervisor = true;
    supervisor_spec& s = c.sup;
    if (!n["strategy"]) {
      fail(n, join(key, "strategy"), "missing");
    }
    s.strat = choice<strategy>(n["strategy"], join(key, "strategy"),
                               {{"one_for_one", strategy::one_for_one},
                                {"one_for_all", strategy::one_for_all},
                                {"rest_for_one", strategy::rest_for_one},
                                {"simple_one_for_one", strategy::simple_one_for_one}});
    if (n["max_restarts"]) {
      s.max_restarts =
          static_cast<int>(integer(n["max_restarts"], join(key, "max_restarts"), 0, 1000000));
    }
    if (n["max_seconds"]) {
      s.max_seconds =
          static_cast<int>(integer(n["max_seconds"], join(key, "max_seconds"), 1, 86400));
    }
    if (s.strat == strategy::simple_one_for_one) {
      if (n["children"]) {
        fail(n["children"], join(key, "children"),
             "a simple_one_for_one supervisor has a template, not children");
      }
      if (!n["template"]) {
        fail(n, join(key, "template"), "missing (simple_one_for_one needs a child template)");
      }
      auto t = std::make_shared<child_spec>();
      child(n["template"], join(key, "template"), *t, /*is_template=*/true);
      s.child_template = std::move(t);
      return;
    }
    if (n["template"]) {
      fail(n["template"], join(key, "template"), "only simple_one_for_one supervisors take one");
    }
    if (!n["children"]) {
      return;
    }
    const YAML::Node& list = n["children"];
    if (!list.IsSequence()) {
      fail(list, join(key, "children"), "expected a list of children");
    }
    std::set<std::string> ids;
    for (std::size_t i = 0; i < list.size(); ++i) {
      std::string ck = fmt::format("{}[{}]", join(key, "children"), i);
      child_spec cs;
      child(list[i], ck, cs, false);
      if (!ids.insert(cs.id).second) {
        fail(list[i]["id"], ck + ".id", "duplicate id '" + cs.id + "'");
      }
      s.children.push_back(std::move(cs));
    }
  }

  void child(const YAML::Node& n, const std::string& key, child_spec& c, bool is_template) {
    if (!n.IsMap()) {
      fail(n, key, "expected a mapping (a worker or a supervisor)");
    }
    if (n["strategy"] || n["children"]) {
      check_keys(n, key, config_keys::supervisor_child);
    } else {
      check_keys(n, key, config_keys::worker);
    }
    if (!n["id"]) {
      if (!is_template) {
        fail(n, join(key, "id"), "missing");
      }
      c.id = "child";
    } else {
      c.id = scalar(n["id"], join(key, "id"));
      if (!valid_name(c.id)) {
        fail(n["id"], join(key, "id"),
             fmt::format("'{}': an id is 1 to {} letters, digits, '_', '-' or '.', not starting "
                         "with '.'",
                         c.id, config_limits::name_chars));
      }
    }
    if (n["restart"]) {
      c.restart = choice<restart_type>(n["restart"], join(key, "restart"),
                                       {{"permanent", restart_type::permanent},
                                        {"transient", restart_type::transient},
                                        {"temporary", restart_type::temporary}});
    }
    c.fingerprint = fingerprint(n);
    if (n["strategy"] || n["children"]) {
      supervisor(n, key, c);
      return;
    }
    worker(n, key, c);
  }

  void worker(const YAML::Node& n, const std::string& key, child_spec& c) {
    worker_spec& w = c.worker;
    if (n["name"]) {
      c.name = scalar(n["name"], join(key, "name"));
      if (!valid_name(c.name)) {
        fail(n["name"], join(key, "name"),
             fmt::format("'{}': a name is 1 to {} letters, digits, '_', '-' or '.', not "
                         "starting with '.'",
                         c.name, config_limits::name_chars));
      }
      // The registry is one directory per node: a second holder would
      // silently take the name over from the first.
      if (!names_.insert(c.name).second) {
        fail(n["name"], join(key, "name"),
             "duplicate name '" + c.name + "': a registered name is unique in the node");
      }
    }
    bool shell = n["shell"] && boolean(n["shell"], join(key, "shell"));
    if (!n["command"]) {
      fail(n, join(key, "command"), "missing");
    }
    w.argv = argv(n["command"], join(key, "command"), shell);
    if (n["env"]) {
      w.env = env(n["env"], join(key, "env"));
    }
    if (n["cwd"]) {
      w.cwd = resolve(scalar(n["cwd"], join(key, "cwd")));
      struct stat st {};
      if (::stat(w.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        fail(n["cwd"], join(key, "cwd"), "not a directory: " + w.cwd);
      }
    }
    if (shell) {
      w.program = w.argv[0];
      w.program_found_in = "as written";
    } else {
      resolve_program(n["command"], join(key, "command"), w, node_path_);
    }
    if (n["user"]) {
      std::string u = scalar(n["user"], join(key, "user"));
      struct passwd* pw = ::getpwnam(u.c_str());
      if (pw == nullptr) {
        fail(n["user"], join(key, "user"), "no such user: " + u);
      }
      if (::geteuid() != 0 && pw->pw_uid != ::geteuid()) {
        fail(n["user"], join(key, "user"), "switching user needs otpd to run as root");
      }
      w.uid = pw->pw_uid;
      if (!n["group"]) {
        w.gid = pw->pw_gid;
      }
    }
    if (n["group"]) {
      std::string g = scalar(n["group"], join(key, "group"));
      struct group* gr = ::getgrnam(g.c_str());
      if (gr == nullptr) {
        fail(n["group"], join(key, "group"), "no such group: " + g);
      }
      if (::geteuid() != 0 && gr->gr_gid != ::getegid()) {
        fail(n["group"], join(key, "group"), "switching group needs otpd to run as root");
      }
      w.gid = gr->gr_gid;
    }
    if (n["shutdown"]) {
      w.shutdown = shutdown(n["shutdown"], join(key, "shutdown"));
    }
    if (n["signal"]) {
      std::string s = scalar(n["signal"], join(key, "signal"));
      int sig = core::signal_from_name(s);
      if (sig <= 0 || sig >= NSIG) {
        fail(n["signal"], join(key, "signal"), "unknown signal '" + s + "'");
      }
      w.shutdown.signal = sig;
    }
    if (n["readiness"]) {
      w.readiness = readiness(n["readiness"], join(key, "readiness"));
    }
    if (n["start_timeout"]) {
      w.readiness.start_timeout_ms =
          static_cast<int>(integer(n["start_timeout"], join(key, "start_timeout"), 1, 86400000));
    }
    if (n["stdout"]) {
      w.stdout_spec = output(n["stdout"], join(key, "stdout"));
    }
    if (n["stderr"]) {
      w.stderr_spec = output(n["stderr"], join(key, "stderr"));
    }
    if (n["backoff"]) {
      w.backoff = backoff(n["backoff"], join(key, "backoff"));
    }
    if (n["success_exit_codes"]) {
      w.success_exit_codes = exit_codes(n["success_exit_codes"], join(key, "success_exit_codes"));
    }
    if (n["stop_as_group"]) {
      w.stop_as_group = boolean(n["stop_as_group"], join(key, "stop_as_group"));
    }
  }

  // A list of exit codes 0-255, e.g. [0, 3].
  std::vector<int> exit_codes(const YAML::Node& n, const std::string& key) {
    if (!n.IsSequence()) {
      fail(n, key, "expected a list of exit codes, e.g. [0, 3]");
    }
    std::vector<int> out;
    for (std::size_t i = 0; i < n.size(); ++i) {
      out.push_back(static_cast<int>(integer(n[i], fmt::format("{}[{}]", key, i), 0, 255)));
    }
    return out;
  }

  void control(const YAML::Node& n, const std::string& key, control_spec& c) {
    check_keys(n, key, config_keys::control);
    if (n["max_connections"]) {
      c.max_connections =
          static_cast<int>(integer(n["max_connections"], join(key, "max_connections"), 1, 10000));
    }
    if (n["idle_timeout"]) {
      c.idle_timeout_s =
          static_cast<int>(integer(n["idle_timeout"], join(key, "idle_timeout"), 1, 86400));
    }
  }

  std::shared_ptr<config> top(const YAML::Node& doc) {
    auto cfg = std::make_shared<config>();
    cfg->path = file_;
    std::size_t budget = config_limits::max_nodes;
    check_shape(doc, 1, budget);
    if (!doc.IsMap()) {
      fail(doc, "", "expected a mapping with 'node' and 'supervisor'");
    }
    check_keys(doc, "", config_keys::top);
    if (doc["node"]) {
      const YAML::Node& n = doc["node"];
      check_keys(n, "node", config_keys::node);
      if (n["name"]) {
        cfg->node.name = scalar(n["name"], "node.name");
        if (!valid_node_name(cfg->node.name)) {
          fail(n["name"], "node.name",
               fmt::format("'{}': a node name is 1 to {} letters, digits, '_' or '-'",
                           cfg->node.name, config_limits::name_chars));
        }
      }
      if (n["runtime_dir"]) {
        cfg->node.runtime_dir = resolve(scalar(n["runtime_dir"], "node.runtime_dir"));
      }
      if (n["env"]) {
        cfg->node.env = env(n["env"], "node.env");
      }
      if (n["path"]) {
        cfg->node.path = search_path(n["path"], "node.path");
        node_path_ = cfg->node.path;
      }
      if (n["control"]) {
        control(n["control"], "node.control", cfg->node.control);
      }
      if (n["log_target"]) {
        cfg->node.log_target = choice<log_target_kind>(n["log_target"], "node.log_target",
                                                       {{"stderr", log_target_kind::stderr_stream},
                                                        {"journald", log_target_kind::journald},
                                                        {"syslog", log_target_kind::syslog}});
      }
    }
    if (!doc["supervisor"]) {
      fail(doc, "supervisor", "missing (the root supervisor)");
    }
    const YAML::Node& s = doc["supervisor"];
    if (!s.IsMap()) {
      fail(s, "supervisor", "expected a mapping");
    }
    check_keys(s, "supervisor", config_keys::root_supervisor);
    cfg->root.id = "root";
    cfg->root.fingerprint = fingerprint(s);
    supervisor(s, "supervisor", cfg->root);
    return cfg;
  }

 private:
  std::string file_;
  std::string base_dir_;
  std::vector<std::string> node_path_;
  std::set<std::string> names_;  // registered names seen so far
};

}  // namespace

core::Result<std::shared_ptr<const config>> parse_config(const std::string& text,
                                                         const std::string& file) {
  if (text.size() > config_limits::document_bytes) {
    return {core::errc::invalid_argument, fmt::format("{}: the config is larger than {} bytes",
                                                      file, config_limits::document_bytes)};
  }
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(file, ec);
  parser ps(file, p.parent_path().string());
  try {
    YAML::Node doc = YAML::Load(text);
    return std::shared_ptr<const config>(ps.top(doc));
  } catch (const config_error& e) {
    return {core::errc::invalid_argument, e.what()};
  } catch (const YAML::Exception& e) {
    return {core::errc::invalid_argument,
            fmt::format("{}:{}:{}: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg)};
  } catch (const std::exception& e) {
    // Out of memory or a library's own limit: still an answer, never terminate.
    return {core::errc::invalid_argument,
            fmt::format("{}: unable to load the config: {}", file, e.what())};
  }
}

core::Result<std::shared_ptr<const config>> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return {core::errc::invalid_argument,
            fmt::format("{}: unable to read the config: {}", path, std::strerror(errno))};
  }
  // Reads one byte past the limit, no more: a config path naming a huge
  // file (or /dev/zero) is refused without reading it all.
  std::string text(config_limits::document_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return parse_config(text, path);
}

namespace {

// Who writes to journald / syslog: "node.log_target" and "PATH's stdout".
void log_target_users(const child_spec& c, const std::string& path,
                      std::vector<std::pair<std::string, output_kind>>& out) {
  if (c.is_supervisor) {
    for (const auto& k : c.sup.children) {
      log_target_users(k, path.empty() ? k.id : path + "/" + k.id, out);
    }
    if (c.sup.child_template) {
      log_target_users(*c.sup.child_template, (path.empty() ? "" : path + "/") + "<template>", out);
    }
    return;
  }
  for (const auto* o : {&c.worker.stdout_spec, &c.worker.stderr_spec}) {
    if (o->kind == output_kind::journald || o->kind == output_kind::syslog) {
      out.emplace_back(path + "'s " + (o == &c.worker.stdout_spec ? "stdout" : "stderr"), o->kind);
    }
  }
}

}  // namespace

std::vector<std::string> unreachable_log_targets(const config& c) {
  std::vector<std::pair<std::string, output_kind>> users;
  if (c.node.log_target == log_target_kind::journald) {
    users.emplace_back("node.log_target", output_kind::journald);
  } else if (c.node.log_target == log_target_kind::syslog) {
    users.emplace_back("node.log_target", output_kind::syslog);
  }
  log_target_users(c.root, "", users);
  std::optional<std::string> journal_error, syslog_error;  // probed once each
  std::vector<std::string> out;
  for (const auto& [who, kind] : users) {
    bool journal = kind == output_kind::journald;
    auto& why = journal ? journal_error : syslog_error;
    if (!why) {
      if (journal) {
        auto fd = core::journal_stream("otpd", 6, false);
        why = fd ? std::string() : fd.message();
      } else {
        auto fd = core::syslog_socket();
        why = fd ? std::string() : fd.message();
      }
    }
    if (!why->empty()) {
      out.push_back(fmt::format("{}: {}: unable to reach {} ({}; {} sets another socket)", who,
                                journal ? "journald" : "syslog", journal ? "the journal" : "syslog",
                                *why, journal ? "OTPD_JOURNAL_SOCKET" : "OTPD_SYSLOG_SOCKET"));
    }
  }
  return out;
}

}  // namespace otpd::supervisor

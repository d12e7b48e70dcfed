#include <arpa/inet.h>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

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

// Whether this process holds cap in its effective (or permitted) set.
bool holds_capability(int cap, bool permitted) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) {
    return false;
  }
  const auto& d = data[cap / 32];
  return ((permitted ? d.permitted : d.effective) >> (cap % 32) & 1u) != 0;
}

// The resources of `rlimits:`: their names, whether values are bytes (K, M,
// G, T suffixes allowed), the largest value, and whether "unlimited" is one.
struct rlimit_resource {
  std::string_view name;
  int resource;
  bool bytes;
  rlim_t max;
  bool unlimited_ok;
};
constexpr rlim_t rlim_any = RLIM_INFINITY - 1;
// The kernel's own cap on fs.nr_open (include/linux/fs.h sysctl_nr_open_max).
constexpr rlim_t nofile_max = 1073741816;
constexpr std::array<rlimit_resource, 14> rlimit_resources{{
    {"nofile", RLIMIT_NOFILE, false, nofile_max, false},
    {"core", RLIMIT_CORE, true, rlim_any, true},
    {"nproc", RLIMIT_NPROC, false, rlim_any, true},
    {"as", RLIMIT_AS, true, rlim_any, true},
    {"memlock", RLIMIT_MEMLOCK, true, rlim_any, true},
    {"stack", RLIMIT_STACK, true, rlim_any, true},
    {"cpu", RLIMIT_CPU, false, rlim_any, true},  // seconds
    {"fsize", RLIMIT_FSIZE, true, rlim_any, true},
    {"data", RLIMIT_DATA, true, rlim_any, true},
    {"msgqueue", RLIMIT_MSGQUEUE, true, rlim_any, true},
    {"nice", RLIMIT_NICE, false, 40, true},  // ceiling 20 - value
    {"rtprio", RLIMIT_RTPRIO, false, 99, true},
    {"sigpending", RLIMIT_SIGPENDING, false, rlim_any, true},
    {"locks", RLIMIT_LOCKS, false, rlim_any, true},
}};

// n[key]. yaml-cpp's operator[] is a template on the key's type and each
// string literal's length is a type of its own: through this one function
// the loader compiles it once instead of about twenty times.
YAML::Node get(const YAML::Node& n, const std::string& key) {
  return n[key];
}

class parser {
 public:
  parser(std::string file, std::string base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& what) {
    // A copy made for an instance has no marks of its own: the line is its
    // original's mapping.
    const YAML::Mark m = instance_mark_.is_null() ? at.Mark() : instance_mark_;
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
    if (get(n, "to")) {
      if (get(n, "file")) {
        fail(get(n, "to"), join(key, "to"), "give either file or to, not both");
      }
      // to: null is YAML's null, not the word.
      std::string to = get(n, "to").IsNull() ? "null" : scalar(get(n, "to"), join(key, "to"));
      if (!output_keyword(to, o)) {
        fail(get(n, "to"), join(key, "to"),
             "expected inherit, null, inherit_prefixed, journald or syslog, got " + to);
      }
      for (const char* k : {"max_size", "keep", "rotate"}) {
        if (n[k]) {
          fail(n[k], join(key, k), "only for a file output (file: PATH)");
        }
      }
    } else {
      if (!get(n, "file")) {
        fail(n, join(key, "file"), "missing (the log file path, or to: for another output)");
      }
      o.kind = output_kind::file;
      o.path = resolve(scalar(get(n, "file"), join(key, "file")));
    }
    if (get(n, "max_size")) {
      o.max_bytes = size(get(n, "max_size"), join(key, "max_size"));
    }
    if (get(n, "keep")) {
      o.keep = static_cast<int>(integer(get(n, "keep"), join(key, "keep"), 1, 100));
    }
    if (get(n, "rotate")) {
      o.rotate = boolean(get(n, "rotate"), join(key, "rotate"));
    }
    if (get(n, "timestamps")) {
      o.timestamps = boolean(get(n, "timestamps"), join(key, "timestamps"));
    }
    return o;
  }

  // The address of a tcp or http probe: HOST:PORT, [IPV6]:PORT, or :PORT
  // (127.0.0.1); with default_port > 0 the port may be left out. A host
  // name is resolved when the probe runs, not here: a config must validate
  // on any machine, and names may change.
  void probe_address(const YAML::Node& at, const std::string& key, const std::string& text,
                     int default_port, const char* example, std::string& host, int& port) {
    std::string h;
    std::string digits;
    bool has_port = false;
    if (!text.empty() && text[0] == '[') {
      auto close = text.find(']');
      if (close == std::string::npos) {
        fail(at, key, fmt::format("expected [IPV6]:PORT, e.g. {}", "[::1]:8080"));
      }
      h = text.substr(1, close - 1);
      in6_addr a6{};
      if (::inet_pton(AF_INET6, h.c_str(), &a6) != 1) {
        fail(at, key, "'" + h + "' is not an IPv6 address");
      }
      std::string rest = text.substr(close + 1);
      if (!rest.empty()) {
        if (rest[0] != ':') {
          fail(at, key, fmt::format("expected HOST:PORT, e.g. {}", example));
        }
        has_port = true;
        digits = rest.substr(1);
      }
    } else {
      auto colon = text.rfind(':');
      if (colon != std::string::npos && text.find(':') != colon) {
        fail(at, key, "an IPv6 address goes in brackets, e.g. [::1]:8080");
      }
      h = colon == std::string::npos ? text : text.substr(0, colon);
      if (colon != std::string::npos) {
        has_port = true;
        digits = text.substr(colon + 1);
      }
      if (h.empty()) {
        h = "127.0.0.1";
      }
      bool name_chars = std::all_of(h.begin(), h.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '-' || c == '_';
      });
      if (!name_chars || h.size() > 253 || h.front() == '.' || h.front() == '-') {
        fail(at, key, "'" + h + "' is not a host name or an IP address");
      }
    }
    long p = default_port;
    if (has_port || default_port <= 0) {
      bool numeric =
          !digits.empty() && digits.size() <= 5 &&
          std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      p = numeric ? std::stol(digits) : 0;
    }
    if (p <= 0 || p > 65535) {
      fail(at, key, fmt::format("expected HOST:PORT, e.g. {}", example));
    }
    host = h;
    port = static_cast<int>(p);
  }

  // http://HOST[:PORT][/PATH] (the scheme may be left out): a GET of PATH
  // (default /) on port PORT (default 80).
  void http_url(const YAML::Node& at, const std::string& key, std::string& host, int& port,
                std::string& path) {
    std::string s = scalar(at, key);
    if (s.starts_with("https://")) {
      fail(at, key, "https is not supported (a probe speaks plain HTTP): probe a plain port");
    }
    if (s.starts_with("http://")) {
      s = s.substr(7);
    }
    auto slash = s.find('/');
    std::string authority = s.substr(0, slash);
    path = slash == std::string::npos ? "/" : s.substr(slash);
    // The path goes into the request line as it is: no blanks, no control
    // characters (they would end the line early or forge headers).
    bool clean = std::all_of(path.begin(), path.end(), [](char c) { return c > ' ' && c < 0x7f; });
    if (!clean || path.size() > 1024) {
      fail(at, key, "the path must be at most 1024 printable characters, without blanks");
    }
    probe_address(at, key, authority, 80, "http://127.0.0.1:8080/healthz", host, port);
  }

  struct probe_fields {
    probe_kind kind = probe_kind::tcp;
    std::string host;
    int port = 0;
    std::string path;       // unix
    std::string http_path;  // http
    std::vector<std::string> command;
  };

  // The one check of a readiness or liveness mapping: exactly one of tcp,
  // unix, http and command.
  probe_fields probe(const YAML::Node& n, const std::string& key, const char* expected) {
    int kinds = 0;
    for (const char* k : {"tcp", "unix", "http", "command"}) {
      kinds += n[k] ? 1 : 0;
    }
    if (kinds != 1) {
      fail(n, key, expected);
    }
    probe_fields f;
    if (get(n, "tcp")) {
      f.kind = probe_kind::tcp;
      probe_address(get(n, "tcp"), join(key, "tcp"), scalar(get(n, "tcp"), join(key, "tcp")), 0,
                    "127.0.0.1:6379", f.host, f.port);
    } else if (get(n, "unix")) {
      f.kind = probe_kind::unix_socket;
      f.path = resolve(scalar(get(n, "unix"), join(key, "unix")));
      if (f.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
        fail(get(n, "unix"), join(key, "unix"),
             fmt::format("a socket path has at most {} bytes", sizeof(sockaddr_un{}.sun_path) - 1));
      }
    } else if (get(n, "http")) {
      f.kind = probe_kind::http;
      http_url(get(n, "http"), join(key, "http"), f.host, f.port, f.http_path);
    } else {
      f.kind = probe_kind::command;
      const YAML::Node& c = get(n, "command");
      f.command = c.IsScalar() ? std::vector<std::string>{"/bin/sh", "-c", c.Scalar()}
                               : argv(c, join(key, "command"), false);
    }
    return f;
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
      r.kind = choice<readiness_kind>(n, key,
                                      {{"exec", readiness_kind::exec},
                                       {"notify", readiness_kind::notify},
                                       {"sd_notify", readiness_kind::sd_notify}});
      return r;
    }
    check_keys(n, key, config_keys::readiness);
    if (get(n, "interval")) {
      r.probe_interval_ms =
          static_cast<int>(integer(get(n, "interval"), join(key, "interval"), 1, 60000));
    }
    probe_fields f = probe(n, key,
                           "expected exec, notify, sd_notify, {tcp: HOST:PORT}, {unix: PATH}, "
                           "{http: URL} or {command: ...}");
    switch (f.kind) {
      case probe_kind::tcp:
        r.kind = readiness_kind::tcp;
        break;
      case probe_kind::unix_socket:
        r.kind = readiness_kind::unix_socket;
        break;
      case probe_kind::http:
        r.kind = readiness_kind::http;
        break;
      case probe_kind::command:
        r.kind = readiness_kind::command;
        break;
    }
    r.host = std::move(f.host);
    r.port = f.port;
    r.path = std::move(f.path);
    r.http_path = std::move(f.http_path);
    r.command = std::move(f.command);
    return r;
  }

  liveness_spec liveness(const YAML::Node& n, const std::string& key) {
    liveness_spec l;
    check_keys(n, key, config_keys::liveness);
    probe_fields f = probe(n, key,
                           "expected one of {tcp: HOST:PORT}, {unix: PATH}, {http: URL} or "
                           "{command: ...}");
    l.enabled = true;
    l.kind = f.kind;
    l.host = std::move(f.host);
    l.port = f.port;
    l.path = f.kind == probe_kind::http ? std::move(f.http_path) : std::move(f.path);
    l.command = std::move(f.command);
    if (get(n, "interval")) {
      l.interval_ms =
          static_cast<int>(integer(get(n, "interval"), join(key, "interval"), 10, 86400000));
    }
    if (get(n, "timeout")) {
      l.timeout_ms = static_cast<int>(integer(get(n, "timeout"), join(key, "timeout"), 1, 3600000));
    }
    if (get(n, "failures")) {
      l.failures = static_cast<int>(integer(get(n, "failures"), join(key, "failures"), 1, 1000));
    }
    if (get(n, "initial_delay")) {
      l.initial_delay_ms = static_cast<int>(
          integer(get(n, "initial_delay"), join(key, "initial_delay"), 0, 86400000));
    }
    return l;
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
    if (get(n, "initial")) {
      b.initial_ms = static_cast<int>(integer(get(n, "initial"), join(key, "initial"), 0, 3600000));
    }
    if (get(n, "max")) {
      b.max_ms = static_cast<int>(integer(get(n, "max"), join(key, "max"), 0, 3600000));
    }
    if (get(n, "factor")) {
      b.factor = real(get(n, "factor"), join(key, "factor"), 1.0, 100.0);
    }
    if (get(n, "jitter")) {
      b.jitter = real(get(n, "jitter"), join(key, "jitter"), 0.0, 1.0);
    }
    if (get(n, "reset_after")) {
      b.reset_after_ms =
          static_cast<int>(integer(get(n, "reset_after"), join(key, "reset_after"), 0, 86400000));
    }
    if (b.max_ms < b.initial_ms) {
      fail(n, key, "max must not be below initial");
    }
    return b;
  }

  // "FILE:LINE:COL: KEY" of n, the prefix of fail()'s messages.
  std::string where(const YAML::Node& n, const std::string& key) const {
    const YAML::Mark m = n.Mark();
    return m.line >= 0 ? fmt::format("{}:{}:{}: {}", file_, m.line + 1, m.column + 1, key)
                       : fmt::format("{}: {}", file_, key);
  }

  // memory: a size (256M, 1G; at least 1M: less is no working program);
  // cpu: cores, a number in [0.01, 4096] (0.5: half of one); pids: a count.
  // Whether a cgroup controller can enforce them is the daemon's to say
  // (check_limits), not the loader's: it depends on the host.
  limits_spec limits(const YAML::Node& n, const std::string& key) {
    limits_spec l;
    check_keys(n, key, config_keys::limits);
    if (get(n, "memory")) {
      l.memory_bytes = size(get(n, "memory"), join(key, "memory"));
      if (l.memory_bytes < (1u << 20)) {
        fail(get(n, "memory"), join(key, "memory"), "at least 1M");
      }
      l.at_memory = where(get(n, "memory"), join(key, "memory"));
    }
    if (get(n, "cpu")) {
      l.cpu_cores = real(get(n, "cpu"), join(key, "cpu"), 0.01, 4096);
      l.at_cpu = where(get(n, "cpu"), join(key, "cpu"));
    }
    if (get(n, "pids")) {
      l.pids = static_cast<std::uint64_t>(integer(get(n, "pids"), join(key, "pids"), 1, 4194304));
      l.at_pids = where(get(n, "pids"), join(key, "pids"));
    }
    return l;
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
    if (!get(n, "strategy")) {
      fail(n, join(key, "strategy"), "missing");
    }
    s.strat = choice<strategy>(get(n, "strategy"), join(key, "strategy"),
                               {{"one_for_one", strategy::one_for_one},
                                {"one_for_all", strategy::one_for_all},
                                {"rest_for_one", strategy::rest_for_one},
                                {"simple_one_for_one", strategy::simple_one_for_one}});
    if (get(n, "max_restarts")) {
      s.max_restarts =
          static_cast<int>(integer(get(n, "max_restarts"), join(key, "max_restarts"), 0, 1000000));
    }
    if (get(n, "max_seconds")) {
      s.max_seconds =
          static_cast<int>(integer(get(n, "max_seconds"), join(key, "max_seconds"), 1, 86400));
    }
    if (s.strat == strategy::simple_one_for_one) {
      if (get(n, "children")) {
        fail(get(n, "children"), join(key, "children"),
             "a simple_one_for_one supervisor has a template, not children");
      }
      if (!get(n, "template")) {
        fail(n, join(key, "template"), "missing (simple_one_for_one needs a child template)");
      }
      auto t = std::make_shared<child_spec>();
      child(get(n, "template"), join(key, "template"), *t, /*is_template=*/true);
      s.child_template = std::move(t);
      return;
    }
    if (get(n, "template")) {
      fail(get(n, "template"), join(key, "template"),
           "only simple_one_for_one supervisors take one");
    }
    if (!get(n, "children")) {
      return;
    }
    const YAML::Node& list = get(n, "children");
    if (!list.IsSequence()) {
      fail(list, join(key, "children"), "expected a list of children");
    }
    std::set<std::string> ids;
    for (std::size_t i = 0; i < list.size(); ++i) {
      std::string ck = fmt::format("{}[{}]", join(key, "children"), i);
      const YAML::Node& item = list[i];
      if (item.IsMap() && get(item, "instances") && !get(item, "strategy") &&
          !get(item, "children")) {
        instances(item, ck, ids, s);
        continue;
      }
      child_spec cs;
      child(item, ck, cs, false);
      if (!ids.insert(cs.id).second) {
        fail(get(item, "id"), ck + ".id", "duplicate id '" + cs.id + "'");
      }
      s.children.push_back(std::move(cs));
    }
  }

  // `instances: N` on a worker: N children id-0 ... id-(N-1), each from a
  // copy of the mapping with "{instance}" replaced by its number in every
  // value (command, env, probe addresses, file names...), like
  // supervisord's numprocs and PM2's instances.
  void instances(const YAML::Node& item, const std::string& ck, std::set<std::string>& ids,
                 supervisor_spec& s) {
    auto count = static_cast<int>(
        integer(get(item, "instances"), ck + ".instances", 1, config_limits::max_instances));
    if (!get(item, "id")) {
      fail(item, ck + ".id", "missing");
    }
    std::string base = scalar(get(item, "id"), ck + ".id");
    instance_mark_ = item.Mark();
    for (int k = 0; k < count; ++k) {
      YAML::Node copy = YAML::Clone(item);
      copy.remove("instances");
      substitute_instance(copy, std::to_string(k));
      copy["id"] = fmt::format("{}-{}", base, k);
      child_spec cs;
      child(copy, fmt::format("{}(instance {})", ck, k), cs, false);
      cs.instance_of = base;
      cs.instance = k;
      if (!ids.insert(cs.id).second) {
        fail(get(item, "id"), ck + ".id", "duplicate id '" + cs.id + "' (from instances)");
      }
      s.children.push_back(std::move(cs));
    }
    instance_mark_ = YAML::Mark::null_mark();
  }

  static void substitute_instance(YAML::Node n, const std::string& k) {
    if (n.IsScalar()) {
      std::string v = n.Scalar();
      bool changed = false;
      for (auto at = v.find("{instance}"); at != std::string::npos;
           at = v.find("{instance}", at + k.size())) {
        v.replace(at, std::string_view("{instance}").size(), k);
        changed = true;
      }
      if (changed) {
        n = v;
      }
      return;
    }
    if (n.IsSequence()) {
      for (std::size_t i = 0; i < n.size(); ++i) {
        substitute_instance(n[i], k);
      }
      return;
    }
    if (n.IsMap()) {
      for (auto it = n.begin(); it != n.end(); ++it) {
        substitute_instance(it->second, k);
      }
    }
  }

  void child(const YAML::Node& n, const std::string& key, child_spec& c, bool is_template) {
    if (!n.IsMap()) {
      fail(n, key, "expected a mapping (a worker or a supervisor)");
    }
    if (get(n, "strategy") || get(n, "children")) {
      check_keys(n, key, config_keys::supervisor_child);
    } else {
      check_keys(n, key, config_keys::worker);
    }
    if (!get(n, "id")) {
      if (!is_template) {
        fail(n, join(key, "id"), "missing");
      }
      c.id = "child";
    } else {
      c.id = scalar(get(n, "id"), join(key, "id"));
      if (!valid_name(c.id)) {
        fail(get(n, "id"), join(key, "id"),
             fmt::format("'{}': an id is 1 to {} letters, digits, '_', '-' or '.', not starting "
                         "with '.'",
                         c.id, config_limits::name_chars));
      }
    }
    if (get(n, "restart")) {
      c.restart = choice<restart_type>(get(n, "restart"), join(key, "restart"),
                                       {{"permanent", restart_type::permanent},
                                        {"transient", restart_type::transient},
                                        {"temporary", restart_type::temporary}});
    }
    c.fingerprint = fingerprint(n);
    if (get(n, "strategy") || get(n, "children")) {
      supervisor(n, key, c);
      return;
    }
    worker(n, key, c);
  }

  void worker(const YAML::Node& n, const std::string& key, child_spec& c) {
    worker_spec w;
    if (get(n, "name")) {
      c.name = scalar(get(n, "name"), join(key, "name"));
      if (!valid_name(c.name)) {
        fail(get(n, "name"), join(key, "name"),
             fmt::format("'{}': a name is 1 to {} letters, digits, '_', '-' or '.', not "
                         "starting with '.'",
                         c.name, config_limits::name_chars));
      }
      // The registry is one directory per node: a second holder would
      // silently take the name over from the first.
      if (!names_.insert(c.name).second) {
        fail(get(n, "name"), join(key, "name"),
             "duplicate name '" + c.name + "': a registered name is unique in the node");
      }
    }
    bool shell = get(n, "shell") && boolean(get(n, "shell"), join(key, "shell"));
    if (!get(n, "command")) {
      fail(n, join(key, "command"), "missing");
    }
    w.argv = argv(get(n, "command"), join(key, "command"), shell);
    if (get(n, "env")) {
      w.env = env(get(n, "env"), join(key, "env"));
    }
    if (get(n, "cwd")) {
      w.cwd = resolve(scalar(get(n, "cwd"), join(key, "cwd")));
      struct stat st {};
      if (::stat(w.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        fail(get(n, "cwd"), join(key, "cwd"), "not a directory: " + w.cwd);
      }
    }
    if (shell) {
      w.program = w.argv[0];
      w.program_found_in = "as written";
    } else {
      resolve_program(get(n, "command"), join(key, "command"), w, node_path_);
    }
    if (get(n, "user")) {
      std::string u = scalar(get(n, "user"), join(key, "user"));
      struct passwd* pw = ::getpwnam(u.c_str());
      if (pw == nullptr) {
        fail(get(n, "user"), join(key, "user"), "no such user: " + u);
      }
      if (::geteuid() != 0 && pw->pw_uid != ::geteuid()) {
        fail(get(n, "user"), join(key, "user"), "switching user needs otpd to run as root");
      }
      w.uid = pw->pw_uid;
      w.user = u;
      if (!get(n, "group")) {
        w.gid = pw->pw_gid;
      }
    }
    if (get(n, "group")) {
      std::string g = scalar(get(n, "group"), join(key, "group"));
      struct group* gr = ::getgrnam(g.c_str());
      if (gr == nullptr) {
        fail(get(n, "group"), join(key, "group"), "no such group: " + g);
      }
      if (::geteuid() != 0 && gr->gr_gid != ::getegid()) {
        fail(get(n, "group"), join(key, "group"), "switching group needs otpd to run as root");
      }
      w.gid = gr->gr_gid;
    }
    if (get(n, "shutdown")) {
      w.shutdown = shutdown(get(n, "shutdown"), join(key, "shutdown"));
    }
    if (get(n, "signal")) {
      std::string s = scalar(get(n, "signal"), join(key, "signal"));
      int sig = core::signal_from_name(s);
      if (sig <= 0 || sig >= NSIG) {
        fail(get(n, "signal"), join(key, "signal"), "unknown signal '" + s + "'");
      }
      w.shutdown.signal = sig;
    }
    if (get(n, "readiness")) {
      w.readiness = readiness(get(n, "readiness"), join(key, "readiness"));
    }
    if (get(n, "start_timeout")) {
      w.readiness.start_timeout_ms = static_cast<int>(
          integer(get(n, "start_timeout"), join(key, "start_timeout"), 1, 86400000));
    }
    if (get(n, "stdout")) {
      w.stdout_spec = output(get(n, "stdout"), join(key, "stdout"));
    }
    if (get(n, "stderr")) {
      w.stderr_spec = output(get(n, "stderr"), join(key, "stderr"));
    }
    if (get(n, "backoff")) {
      w.backoff = backoff(get(n, "backoff"), join(key, "backoff"));
    }
    if (get(n, "success_exit_codes")) {
      w.success_exit_codes =
          exit_codes(get(n, "success_exit_codes"), join(key, "success_exit_codes"));
    }
    if (get(n, "stop_as_group")) {
      w.stop_as_group = boolean(get(n, "stop_as_group"), join(key, "stop_as_group"));
    }
    if (get(n, "limits")) {
      w.limits = limits(get(n, "limits"), join(key, "limits"));
    }
    if (get(n, "liveness")) {
      w.liveness = liveness(get(n, "liveness"), join(key, "liveness"));
    }
    sd_notify(n, key, w);
    identity(n, key, w);
    c.worker = intern(std::move(w));
  }

  // Equal workers share one spec: a list of children that differ only in
  // their ids (generated, or from `instances:` without "{instance}") holds
  // one worker_spec, not one each.
  shared_value<worker_spec> intern(worker_spec w) {
    std::hash<std::string> h;
    std::size_t key = h(w.program);
    for (const auto& a : w.argv) {
      key = key * 31 + h(a);
    }
    for (const auto& [k, v] : w.env) {
      key = key * 31 + (h(k) ^ h(v));
    }
    key = key * 31 + h(w.cwd);
    auto& same_hash = interned_[key];
    for (const auto& p : same_hash) {
      if (*p == w) {
        return shared_value<worker_spec>(p);
      }
    }
    same_hash.push_back(std::make_shared<worker_spec>(std::move(w)));
    return shared_value<worker_spec>(same_hash.back());
  }

  // watchdog_sec (seconds, fractions allowed, as systemd's WatchdogSec=)
  // and notify_access (main or all, as its NotifyAccess=).
  void sd_notify(const YAML::Node& n, const std::string& key, worker_spec& w) {
    if (get(n, "watchdog_sec")) {
      // At least 10 ms (a ping every few ms is no watchdog but a busy
      // loop), at most a day.
      double s = real(get(n, "watchdog_sec"), join(key, "watchdog_sec"), 0.01, 86400);
      w.watchdog_usec = static_cast<std::uint64_t>(std::llround(s * 1e6));
    }
    if (get(n, "notify_access")) {
      w.notify_access = choice<notify_access_kind>(
          get(n, "notify_access"), join(key, "notify_access"),
          {{"main", notify_access_kind::main}, {"all", notify_access_kind::all}});
    }
  }

  // rlimits, umask, nice, oom_score_adj, env_file, no_new_privileges,
  // capabilities: what the child is set up with before exec.
  void identity(const YAML::Node& n, const std::string& key, worker_spec& w) {
    if (get(n, "rlimits")) {
      w.rlimits = rlimits(get(n, "rlimits"), join(key, "rlimits"));
    }
    if (get(n, "umask")) {
      // Octal as written ("0027"): YAML 1.2 reads 0027 as the decimal 27
      // and 027 as octal, so the scalar's text is taken, never its number.
      std::string k = join(key, "umask");
      std::string v = scalar(get(n, "umask"), k);
      bool octal = !v.empty() && v.size() <= 4 &&
                   std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '7'; });
      unsigned long m = octal ? std::stoul(v, nullptr, 8) : 01000;
      if (m > 0777) {
        fail(get(n, "umask"), k,
             "expected an octal mode such as \"0027\" (at most 0777), got '" + v + "'");
      }
      w.umask = static_cast<mode_t>(m);
    }
    if (get(n, "nice")) {
      w.nice = static_cast<int>(integer(get(n, "nice"), join(key, "nice"), -20, 19));
    }
    if (get(n, "oom_score_adj")) {
      w.oom_score_adj = static_cast<int>(
          integer(get(n, "oom_score_adj"), join(key, "oom_score_adj"), -1000, 1000));
    }
    if (get(n, "env_file")) {
      // Parsed here so that --check (and a reload) tells a broken file by
      // its line; the daemon reads it again at every start.
      std::string k = join(key, "env_file");
      std::string path = scalar(get(n, "env_file"), k);
      if (path.empty()) {
        fail(get(n, "env_file"), k, "expected a file path");
      }
      w.env_file = resolve(path);
      if (auto env = read_env_file(w.env_file); !env) {
        fail(get(n, "env_file"), k, env.message());
      }
    }
    if (get(n, "no_new_privileges")) {
      w.no_new_privileges = boolean(get(n, "no_new_privileges"), join(key, "no_new_privileges"));
    }
    if (get(n, "capabilities")) {
      w.capabilities = capabilities(get(n, "capabilities"), join(key, "capabilities"));
    }
  }

  // A mapping of resource: value, value a number, "unlimited", or [soft, hard].
  std::vector<rlimit_spec> rlimits(const YAML::Node& n, const std::string& key) {
    check_keys(n, key, config_keys::rlimits);
    std::vector<rlimit_spec> out;
    struct rlimit own {};
    for (const auto& r : rlimit_resources) {
      if (!n[std::string(r.name)]) {
        continue;
      }
      const YAML::Node& v = n[std::string(r.name)];
      std::string k = join(key, std::string(r.name));
      rlimit_spec spec;
      spec.resource = r.resource;
      if (v.IsSequence()) {
        if (v.size() != 2) {
          fail(v, k, "expected a value or [soft, hard]");
        }
        spec.soft = rlimit_value(v[0], k + "[0]", r);
        spec.hard = rlimit_value(v[1], k + "[1]", r);
        if (spec.soft > spec.hard) {
          fail(v, k, "the soft limit is above the hard one");
        }
      } else {
        spec.soft = spec.hard = rlimit_value(v, k, r);
      }
      // Raising a hard limit needs CAP_SYS_RESOURCE (setrlimit(2)): said
      // here rather than as a failed start.
      if (::getrlimit(r.resource, &own) == 0 && spec.hard > own.rlim_max &&
          !holds_capability(CAP_SYS_RESOURCE, false)) {
        fail(v, k,
             fmt::format("a hard limit above otpd's own ({}) needs CAP_SYS_RESOURCE, which otpd "
                         "does not hold",
                         own.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                                       : std::to_string(own.rlim_max)));
      }
      if (r.resource == RLIMIT_NOFILE) {
        nofile_within_nr_open(v, k, spec.hard);
      }
      out.push_back(spec);
    }
    return out;
  }

  // The kernel refuses a nofile limit above fs.nr_open (EPERM at the start).
  void nofile_within_nr_open(const YAML::Node& at, const std::string& key, rlim_t hard) {
    std::ifstream f("/proc/sys/fs/nr_open");
    unsigned long long nr_open = 0;
    if (f >> nr_open && hard > nr_open) {
      fail(at, key, fmt::format("above the system's fs.nr_open ({})", nr_open));
    }
  }

  rlim_t rlimit_value(const YAML::Node& n, const std::string& key, const rlimit_resource& r) {
    std::string s = scalar(n, key);
    if (s == "unlimited" || s == "infinity") {
      if (!r.unlimited_ok) {
        fail(n, key,
             fmt::format("{} cannot be unlimited (the kernel caps it at fs.nr_open)", r.name));
      }
      return RLIM_INFINITY;
    }
    std::string what =
        r.bytes ? fmt::format(
                      "expected bytes (such as 8388608, 512K, 64M, 1G) or "
                      "unlimited, got '{}'",
                      s)
                : fmt::format("expected an integer in [0, {}]{}, got '{}'",
                              r.max == rlim_any ? std::string("2^64-2") : std::to_string(r.max),
                              r.unlimited_ok ? " or unlimited" : "", s);
    rlim_t mult = 1;
    if (r.bytes && !s.empty()) {
      switch (s.back()) {
        case 'K':
        case 'k':
          mult = 1ull << 10;
          break;
        case 'M':
        case 'm':
          mult = 1ull << 20;
          break;
        case 'G':
        case 'g':
          mult = 1ull << 30;
          break;
        case 'T':
        case 't':
          mult = 1ull << 40;
          break;
        default:
          break;
      }
      if (mult != 1) {
        s.pop_back();
      }
    }
    if (s.empty() || s.size() > 19 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      fail(n, key, what);
    }
    rlim_t v = std::stoull(s);  // < 10^19: fits
    if (v > r.max / mult) {
      fail(n, key, what);
    }
    return v * mult;
  }

  // A list of capability names; each must be one otpd holds itself (its
  // permitted set), or no child could be given it.
  std::uint64_t capabilities(const YAML::Node& n, const std::string& key) {
    if (!n.IsSequence()) {
      fail(n, key, "expected a list of capabilities, e.g. [CAP_NET_BIND_SERVICE]");
    }
    std::uint64_t caps = 0;
    for (std::size_t i = 0; i < n.size(); ++i) {
      std::string k = fmt::format("{}[{}]", key, i);
      std::string name = scalar(n[i], k);
      int cap = capability_from_name(name);
      if (cap < 0) {
        fail(n[i], k,
             "unknown capability '" + name + "' (capabilities(7): CAP_NET_BIND_SERVICE, ...)");
      }
      if (!holds_capability(cap, true)) {
        fail(n[i], k,
             ::geteuid() != 0 ? "capabilities need otpd to run as root (it runs as uid " +
                                    std::to_string(::geteuid()) + ")"
                              : "otpd itself does not hold " + capability_name(cap) +
                                    " (not in its permitted set), so it cannot hand it on");
      }
      caps |= std::uint64_t{1} << cap;
    }
    return caps;
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
    if (get(n, "max_connections")) {
      c.max_connections = static_cast<int>(
          integer(get(n, "max_connections"), join(key, "max_connections"), 1, 10000));
    }
    if (get(n, "idle_timeout")) {
      c.idle_timeout_s =
          static_cast<int>(integer(get(n, "idle_timeout"), join(key, "idle_timeout"), 1, 86400));
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
    if (get(doc, "node")) {
      const YAML::Node& n = get(doc, "node");
      check_keys(n, "node", config_keys::node);
      if (get(n, "name")) {
        cfg->node.name = scalar(get(n, "name"), "node.name");
        if (!valid_node_name(cfg->node.name)) {
          fail(get(n, "name"), "node.name",
               fmt::format("'{}': a node name is 1 to {} letters, digits, '_' or '-'",
                           cfg->node.name, config_limits::name_chars));
        }
      }
      if (get(n, "runtime_dir")) {
        cfg->node.runtime_dir = resolve(scalar(get(n, "runtime_dir"), "node.runtime_dir"));
      }
      if (get(n, "env")) {
        cfg->node.env = env(get(n, "env"), "node.env");
      }
      if (get(n, "path")) {
        cfg->node.path = search_path(get(n, "path"), "node.path");
        node_path_ = cfg->node.path;
      }
      if (get(n, "control")) {
        control(get(n, "control"), "node.control", cfg->node.control);
      }
      if (get(n, "log_target")) {
        cfg->node.log_target = choice<log_target_kind>(get(n, "log_target"), "node.log_target",
                                                       {{"stderr", log_target_kind::stderr_stream},
                                                        {"journald", log_target_kind::journald},
                                                        {"syslog", log_target_kind::syslog}});
      }
    }
    if (!get(doc, "supervisor")) {
      fail(doc, "supervisor", "missing (the root supervisor)");
    }
    const YAML::Node& s = get(doc, "supervisor");
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
  YAML::Mark instance_mark_ = YAML::Mark::null_mark();
  std::unordered_map<std::size_t, std::vector<std::shared_ptr<worker_spec>>> interned_;
};

// Gives c (and its children, and its template) workers of their own, copied
// now: see parse_config. Workers shared before are shared after.
void copy_workers(child_spec& c,
                  std::unordered_map<const worker_spec*, shared_value<worker_spec>>& copied) {
  if (!c.is_supervisor) {
    auto [at, fresh] = copied.try_emplace(&*c.worker);
    if (fresh) {
      at->second = shared_value<worker_spec>(worker_spec(*c.worker));
    }
    c.worker = at->second;
  }
  for (auto& k : c.sup.children) {
    copy_workers(k, copied);
  }
  if (c.sup.child_template) {
    auto t = std::make_shared<child_spec>(*c.sup.child_template);
    copy_workers(*t, copied);
    c.sup.child_template = std::move(t);
  }
}

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
    std::shared_ptr<const config> built = ps.top(doc);
    // The config as built sits among the document's nodes (some 400 bytes
    // each, 11 a child): its strings pin nearly every page of the heap once
    // the document is freed (43 MB kept at 10,000 children). A copy made
    // while the document is still alive is laid out in fresh memory, so
    // freeing the document and the first config leaves whole free pages
    // that malloc_trim gives back (docs/benchmarks/restart.md).
    auto copy = std::make_shared<config>(*built);
    std::unordered_map<const worker_spec*, shared_value<worker_spec>> copied;
    copy_workers(copy->root, copied);
    return std::shared_ptr<const config>(std::move(copy));
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
  // Reads past the limit by one chunk at most: a config path naming a huge
  // file (or /dev/zero) is refused without reading it all, and a small one
  // costs no buffer of the limit's size.
  std::string text;
  std::array<char, 64 * 1024> chunk{};
  while (text.size() <= config_limits::document_bytes) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (in.gcount() <= 0) {
      break;
    }
    text.append(chunk.data(), static_cast<std::size_t>(in.gcount()));
  }
  return parse_config(text, path);
}

std::vector<std::string> changed_keys(const child_spec& a, const child_spec& b) {
  // Fingerprints are what the loader emitted itself (a flow map), so they
  // parse; a failure would only mean "the whole child changed".
  YAML::Node x;
  YAML::Node y;
  try {
    x = YAML::Load(a.fingerprint);
    y = YAML::Load(b.fingerprint);
  } catch (const YAML::Exception&) {
    return {"*"};
  }
  // Lookups through const nodes: a non-const operator[] may add the key.
  const YAML::Node& cx = x;
  const YAML::Node& cy = y;
  auto dump = [](const YAML::Node& n) {
    YAML::Emitter e;
    e << YAML::Flow << n;
    return std::string(e.c_str());
  };
  std::vector<std::string> out;
  for (auto it = x.begin(); it != x.end(); ++it) {
    std::string k = it->first.Scalar();
    if (!cy[k] || dump(it->second) != dump(cy[k])) {
      out.push_back(k);
    }
  }
  for (auto it = y.begin(); it != y.end(); ++it) {
    std::string k = it->first.Scalar();
    if (!cx[k]) {
      out.push_back(k);
    }
  }
  return out;
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
  for (const auto* o : {&c.worker->stdout_spec, &c.worker->stderr_spec}) {
    if (o->kind == output_kind::journald || o->kind == output_kind::syslog) {
      out.emplace_back(path + "'s " + (o == &c.worker->stdout_spec ? "stdout" : "stderr"), o->kind);
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

// A worker's env_file (KEY=VALUE lines, the shape systemd's EnvironmentFile=
// and docker's --env-file take), and the capability names of `capabilities:`.
// Both are read by the config loader (otpd --check) and, the env file, again
// by the daemon at every start of the worker.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/supervisor/config.hpp>

namespace otpd::supervisor {
namespace {

// An env file is read by a root daemon at every start: bounded like the
// config itself.
constexpr std::size_t env_file_max_bytes = 1u << 20;

bool key_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (!first && c >= '0' && c <= '9');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The value after '=': unquoted (as is, trailing blanks dropped), 'single'
// (as is) or "double" (with escapes). After a closing quote only blanks or
// a # comment may follow. Returns false with *what set when malformed.
bool parse_value(std::string_view v, std::string& out, std::string& what) {
  v = trim(v);
  if (v.empty() || (v[0] != '\'' && v[0] != '"')) {
    out.assign(v);
    return true;
  }
  char quote = v[0];
  std::size_t i = 1;
  for (; i < v.size() && v[i] != quote; ++i) {
    char c = v[i];
    if (quote == '"' && c == '\\') {
      if (++i == v.size()) {
        break;
      }
      switch (v[i]) {
        case '\\':
        case '"':
        case '$':
        case '`':
          c = v[i];
          break;
        case 'n':
          c = '\n';
          break;
        case 't':
          c = '\t';
          break;
        default:
          what = fmt::format("unknown escape \\{} in a double-quoted value", v[i]);
          return false;
      }
    }
    out += c;
  }
  if (i >= v.size()) {
    what = fmt::format("unterminated {}-quoted value (a value is one line)",
                       quote == '"' ? "double" : "single");
    return false;
  }
  std::string_view rest = trim(v.substr(i + 1));
  if (!rest.empty() && rest[0] != '#') {
    what = "text after the closing quote";
    return false;
  }
  return true;
}

constexpr std::array<std::string_view, 41> cap_names{"CHOWN",
                                                     "DAC_OVERRIDE",
                                                     "DAC_READ_SEARCH",
                                                     "FOWNER",
                                                     "FSETID",
                                                     "KILL",
                                                     "SETGID",
                                                     "SETUID",
                                                     "SETPCAP",
                                                     "LINUX_IMMUTABLE",
                                                     "NET_BIND_SERVICE",
                                                     "NET_BROADCAST",
                                                     "NET_ADMIN",
                                                     "NET_RAW",
                                                     "IPC_LOCK",
                                                     "IPC_OWNER",
                                                     "SYS_MODULE",
                                                     "SYS_RAWIO",
                                                     "SYS_CHROOT",
                                                     "SYS_PTRACE",
                                                     "SYS_PACCT",
                                                     "SYS_ADMIN",
                                                     "SYS_BOOT",
                                                     "SYS_NICE",
                                                     "SYS_RESOURCE",
                                                     "SYS_TIME",
                                                     "SYS_TTY_CONFIG",
                                                     "MKNOD",
                                                     "LEASE",
                                                     "AUDIT_WRITE",
                                                     "AUDIT_CONTROL",
                                                     "SETFCAP",
                                                     "MAC_OVERRIDE",
                                                     "MAC_ADMIN",
                                                     "SYSLOG",
                                                     "WAKE_ALARM",
                                                     "BLOCK_SUSPEND",
                                                     "AUDIT_READ",
                                                     "PERFMON",
                                                     "BPF",
                                                     "CHECKPOINT_RESTORE"};

}  // namespace

core::Result<env_list> parse_env_file(std::string_view text, const std::string& file) {
  env_list out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    auto bad = [&](const std::string& what) -> core::Result<env_list> {
      return {core::errc::invalid_argument, fmt::format("{}:{}: {}", file, line_no, what)};
    };
    if (line.find('\0') != std::string_view::npos) {
      return bad("contains a NUL byte");
    }
    line = trim(line);
    if (line.empty() || line[0] == '#') {
      continue;
    }
    if (line.substr(0, 7) == "export " || line.substr(0, 7) == "export\t") {
      line = trim(line.substr(7));
    }
    std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return bad("expected KEY=VALUE");
    }
    std::string_view key = trim(line.substr(0, eq));
    bool good_key =
        !key.empty() && key_char(key[0], true) &&
        std::all_of(key.begin() + 1, key.end(), [](char c) { return key_char(c, false); });
    if (!good_key) {
      return bad(
          fmt::format("'{}' is not a variable name (letters, digits and '_', not starting "
                      "with a digit)",
                      key));
    }
    std::string value, what;
    if (!parse_value(line.substr(eq + 1), value, what)) {
      return bad(fmt::format("{}: {}", key, what));
    }
    out.emplace_back(std::string(key), std::move(value));
  }
  return out;
}

core::Result<env_list> read_env_file(const std::string& path) {
  // O_NONBLOCK: a FIFO at the path must not hang the daemon's loop.
  core::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    int err = errno;
    return {std::error_code(err, std::system_category()),
            fmt::format("{}: unable to read the env_file: {}", path, std::strerror(err))};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return {core::errc::invalid_argument, fmt::format("{}: the env_file is not a file", path)};
  }
  std::string text(env_file_max_bytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      return {std::error_code(err, std::system_category()),
              fmt::format("{}: unable to read the env_file: {}", path, std::strerror(err))};
    }
    if (n == 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  if (got > env_file_max_bytes) {
    return {core::errc::invalid_argument,
            fmt::format("{}: the env_file is larger than {} bytes", path, env_file_max_bytes)};
  }
  text.resize(got);
  return parse_env_file(text, path);
}

int capability_from_name(std::string_view name) {
  std::string up;
  for (char c : name) {
    up += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  std::string_view n = up;
  if (n.substr(0, 4) == "CAP_") {
    n.remove_prefix(4);
  }
  for (std::size_t i = 0; i < cap_names.size(); ++i) {
    if (cap_names[i] == n) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::string capability_name(int cap) {
  if (cap < 0 || static_cast<std::size_t>(cap) >= cap_names.size()) {
    return fmt::format("capability {}", cap);
  }
  return "CAP_" + std::string(cap_names[static_cast<std::size_t>(cap)]);
}

}  // namespace otpd::supervisor

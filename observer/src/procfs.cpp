#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

#include <otpd/core/unique_fd.hpp>
#include <otpd/observer/procfs.hpp>

namespace otpd::observer {

namespace {

// A whole small file of /proc (one read is not enough for a long command
// line in stat, so read until EOF, bounded).
std::optional<std::string> slurp(const std::string& path) {
  core::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return std::nullopt;
    }
    if (n == 0) {
      return out;
    }
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > 65536) {
      return std::nullopt;
    }
  }
}

// The next space-separated field of text from pos, as a number.
std::optional<std::uint64_t> next_number(std::string_view text, std::size_t& pos) {
  while (pos < text.size() && text[pos] == ' ') {
    ++pos;
  }
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), v);
  if (ec != std::errc{}) {
    return std::nullopt;
  }
  pos = static_cast<std::size_t>(end - text.data());
  return v;
}

bool skip_field(std::string_view text, std::size_t& pos) {
  while (pos < text.size() && text[pos] == ' ') {
    ++pos;
  }
  std::size_t start = pos;
  while (pos < text.size() && text[pos] != ' ' && text[pos] != '\n') {
    ++pos;
  }
  return pos > start;
}

}  // namespace

std::optional<proc_sample> parse_stat(std::string_view text) {
  std::size_t close = text.rfind(')');
  if (close == std::string_view::npos) {
    return std::nullopt;
  }
  std::size_t pos = close + 1;
  // After ')': field 3 (state) and on; utime is field 14, stime 15,
  // starttime 22.
  proc_sample s;
  for (int field = 3; field <= 22; ++field) {
    if (field == 14 || field == 15 || field == 22) {
      auto v = next_number(text, pos);
      if (!v) {
        return std::nullopt;
      }
      if (field == 22) {
        s.start_ticks = *v;
      } else {
        s.cpu_ticks += *v;
      }
    } else if (!skip_field(text, pos)) {
      return std::nullopt;
    }
  }
  return s;
}

std::optional<std::uint64_t> parse_statm_resident(std::string_view text) {
  std::size_t pos = 0;
  if (!next_number(text, pos)) {
    return std::nullopt;
  }
  return next_number(text, pos);
}

std::optional<proc_sample> read_proc(pid_t pid) {
  if (pid <= 0) {
    return std::nullopt;
  }
  std::string base = "/proc/" + std::to_string(pid);
  auto stat = slurp(base + "/stat");
  if (!stat) {
    return std::nullopt;
  }
  auto s = parse_stat(*stat);
  if (!s) {
    return std::nullopt;
  }
  if (auto statm = slurp(base + "/statm")) {
    s->rss_pages = parse_statm_resident(*statm).value_or(0);
  }
  return s;
}

std::optional<std::uint64_t> count_fds(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    return std::nullopt;
  }
  std::uint64_t n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') {
      ++n;
    }
  }
  ::closedir(d);
  return n;
}

long ticks_per_second() noexcept {
  static const long v = ::sysconf(_SC_CLK_TCK);
  return v > 0 ? v : 100;
}

long page_size() noexcept {
  static const long v = ::sysconf(_SC_PAGESIZE);
  return v > 0 ? v : 4096;
}

}  // namespace otpd::observer

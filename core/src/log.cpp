#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include <otpd/core/log.hpp>

namespace otpd::core {
namespace {

log_level level_from_env() {
  const char* v = std::getenv("OTPD_LOG_LEVEL");
  if (v == nullptr) {
    return log_level::info;
  }
  std::string_view s(v);
  if (s == "debug") {
    return log_level::debug;
  }
  if (s == "warn") {
    return log_level::warn;
  }
  if (s == "error") {
    return log_level::error;
  }
  if (s == "off") {
    return log_level::off;
  }
  return log_level::info;
}

// -1: not decided yet (from the environment on first use).
int timestamps_from_env() {
  if (const char* v = std::getenv("OTPD_LOG_TIMESTAMPS"); v != nullptr && *v != '\0') {
    return std::string_view(v) == "0" ? 0 : 1;
  }
  return std::getenv("OTPD_CHILD") != nullptr ? 0 : 1;
}

std::atomic<int> g_level{-1};
std::atomic<int> g_stamps{-1};
std::atomic<int> g_target{static_cast<int>(log_target::stderr_stream)};
int g_syslog_fd = -1;  // log_target::syslog: owned here until the process ends

// syslog severities (RFC 5424), also journald's "<N>" line prefixes.
int severity(log_level l) {
  switch (l) {
    case log_level::debug:
      return 7;
    case log_level::info:
      return 6;
    case log_level::warn:
      return 4;
    case log_level::error:
    case log_level::off:
      return 3;
  }
  return 6;
}
char g_name[64] = "otpd";

const char* level_name(log_level l) {
  switch (l) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warning";
    case log_level::error:
      return "error";
    case log_level::off:
      return "";
  }
  return "";
}

}  // namespace

void set_log_name(std::string_view name) {
  std::size_t n = name.size() < sizeof g_name - 1 ? name.size() : sizeof g_name - 1;
  std::memcpy(g_name, name.data(), n);
  g_name[n] = '\0';
}

void set_log_level(log_level level) {
  g_level.store(static_cast<int>(level));
}

log_level current_log_level() noexcept {
  int l = g_level.load(std::memory_order_relaxed);
  if (l < 0) {
    l = static_cast<int>(level_from_env());
    g_level.store(l, std::memory_order_relaxed);
  }
  return static_cast<log_level>(l);
}

void set_log_timestamps(bool on) {
  g_stamps.store(on ? 1 : 0);
}

bool log_timestamps() noexcept {
  int s = g_stamps.load(std::memory_order_relaxed);
  if (s < 0) {
    s = timestamps_from_env();
    g_stamps.store(s, std::memory_order_relaxed);
  }
  return s != 0;
}

std::int64_t wall_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void format_rfc3339_utc(std::int64_t unix_ms, char* out) noexcept {
  std::int64_t secs = unix_ms / 1000;
  std::int64_t ms = unix_ms % 1000;
  if (ms < 0) {  // before 1970: floor, so the milliseconds stay positive
    ms += 1000;
    --secs;
  }
  time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  auto put = [&out](std::size_t at, long v, int width) {
    for (int i = width - 1; i >= 0; --i) {
      out[at + static_cast<std::size_t>(i)] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
  };
  long year = tm.tm_year + 1900L;
  put(0, year < 0 ? 0 : year % 10000, 4);
  out[4] = '-';
  put(5, tm.tm_mon + 1, 2);
  out[7] = '-';
  put(8, tm.tm_mday, 2);
  out[10] = 'T';
  put(11, tm.tm_hour, 2);
  out[13] = ':';
  put(14, tm.tm_min, 2);
  out[16] = ':';
  put(17, tm.tm_sec, 2);
  out[19] = '.';
  put(20, static_cast<long>(ms), 3);
  out[23] = 'Z';
}

std::string rfc3339_utc(std::int64_t unix_ms) {
  std::string s(rfc3339_chars, ' ');
  format_rfc3339_utc(unix_ms, s.data());
  return s;
}

Result<void> set_log_target(log_target t) {
  if (t == log_target::journald) {
    auto fd = journal_stream(g_name, 6, true);
    if (!fd) {
      return {fd.error(), fd.message()};
    }
    // stderr itself: what otpd and anything inheriting its stderr writes.
    if (::dup2(fd->get(), STDERR_FILENO) < 0) {
      return errno_code();
    }
  } else if (t == log_target::syslog) {
    auto fd = syslog_socket();
    if (!fd) {
      return {fd.error(), fd.message()};
    }
    if (g_syslog_fd >= 0) {
      ::close(g_syslog_fd);
    }
    g_syslog_fd = fd->release();
  }
  g_target.store(static_cast<int>(t));
  return {};
}

void log_line(log_level level, std::string_view text) noexcept {
  try {
    auto target = static_cast<log_target>(g_target.load(std::memory_order_relaxed));
    if (target == log_target::syslog && g_syslog_fd >= 0) {
      constexpr int facility_daemon = 3 << 3;
      if (syslog_send(g_syslog_fd, facility_daemon | severity(level),
                      fmt::format("{}[{}]", g_name, ::getpid()), text)) {
        return;
      }
    }
    std::string line;
    if (target == log_target::journald) {
      // The journal has the time, the pid and the identifier already.
      line = fmt::format("<{}>{}\n", severity(level), text);
    } else if (log_timestamps()) {
      line = rfc3339_utc(wall_ms());
      line += ' ';
    }
    if (target != log_target::journald) {
      line += fmt::format("{}[{}]: {}: {}\n", g_name, ::getpid(), level_name(level), text);
    }
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          continue;
        }
        break;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  } catch (...) {
    // Logging must never take the process down.
  }
}

}  // namespace otpd::core

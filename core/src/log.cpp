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

std::atomic<int> g_level{-1};
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

void log_line(log_level level, std::string_view text) noexcept {
  try {
    std::string line = fmt::format("{}[{}]: {}: {}\n", g_name, ::getpid(), level_name(level), text);
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

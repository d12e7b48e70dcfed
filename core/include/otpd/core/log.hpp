#pragma once

#include <string_view>

#include <fmt/format.h>

namespace otpd::core {

enum class log_level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// Process-wide log settings. The level comes from OTPD_LOG_LEVEL
// (debug|info|warn|error|off) unless set here; the name prefixes every line.
void set_log_name(std::string_view name);
void set_log_level(log_level level);
[[nodiscard]] log_level current_log_level() noexcept;

// Writes one line to stderr with a single write(2), so lines of concurrent
// processes never interleave: "<name>[pid]: <level>: <text>".
void log_line(log_level level, std::string_view text) noexcept;

template <class... Args>
void log(log_level level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < current_log_level()) {
    return;
  }
  log_line(level, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::debug, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::info, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::warn, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  log(log_level::error, f, std::forward<Args>(args)...);
}

}  // namespace otpd::core

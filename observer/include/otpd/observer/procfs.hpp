#pragma once

// What the observer reads from /proc about a process it did not start: CPU
// time and resident memory (per child, until otpd reports its cgroup's
// figures), and otpd's own RSS and open fds. It runs as the node's user, so
// every child's /proc entries are readable. Parsing is pure (tested on
// text); reading returns nothing for a pid that is gone or unreadable.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace otpd::observer {

// One reading of a process.
struct proc_sample {
  std::uint64_t cpu_ticks = 0;    // utime + stime, in clock ticks
  std::uint64_t start_ticks = 0;  // starttime: tells a reused pid from the old one
  std::uint64_t rss_pages = 0;    // resident set, in pages (statm)
};

// utime + stime and starttime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses: fields are
// counted after its last ')'. Empty when the text is not such a line.
[[nodiscard]] std::optional<proc_sample> parse_stat(std::string_view text);
// The resident pages (second field) of /proc/<pid>/statm.
[[nodiscard]] std::optional<std::uint64_t> parse_statm_resident(std::string_view text);

// stat and statm of pid; empty when the process is gone or unreadable.
[[nodiscard]] std::optional<proc_sample> read_proc(pid_t pid);
// Entries of /proc/<pid>/fd; empty when unreadable.
[[nodiscard]] std::optional<std::uint64_t> count_fds(pid_t pid);

// sysconf(_SC_CLK_TCK) and the page size, read once.
[[nodiscard]] long ticks_per_second() noexcept;
[[nodiscard]] long page_size() noexcept;

}  // namespace otpd::observer

#include "procfs.hpp"

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "cgroup.hpp"
#include <fmt/format.h>

#include <otpd/core/spawn.hpp>

namespace otpd::supervisor {
namespace {

void collect_from(pid_t pid, std::vector<pid_t>& out, int depth) {
  if (depth > 64) {
    return;
  }
  std::error_code ec;
  std::filesystem::directory_iterator it(fmt::format("/proc/{}/task", pid), ec);
  if (ec) {
    return;
  }
  for (const auto& t : it) {
    std::ifstream in(t.path() / "children");
    pid_t c;
    while (in >> c) {
      out.push_back(c);
      collect_from(c, out, depth + 1);
    }
  }
}

}  // namespace

void collect_descendants(pid_t pid, std::vector<pid_t>& out) {
  collect_from(pid, out, 0);
}

pid_t parent_of(pid_t pid) {
  // read(2), not a stream: a process that exits while we read makes read()
  // fail with ESRCH, which libstdc++'s filebuf throws through an
  // istreambuf_iterator (otpd's shutdown sweep once died of it).
  std::string s = detail::read_small_file(fmt::format("/proc/{}/stat", pid));
  // The command name in parentheses may itself hold spaces and ')': the
  // fields after it start after the last ')'.
  auto close = s.rfind(')');
  if (close == std::string::npos) {
    return -1;
  }
  std::istringstream rest(s.substr(close + 2));
  char state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

void kill_own_children() {
  std::error_code ec;
  pid_t me = ::getpid();
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) == 0) {
      continue;
    }
    pid_t pid = std::atoi(name.c_str());
    if (parent_of(pid) == me) {
      (void)core::kill_and_reap(pid, SIGKILL, core::deadline::never());
    }
  }
}

}  // namespace otpd::supervisor

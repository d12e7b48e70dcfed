#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <otpd/core/unique_fd.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::testing {

std::chrono::milliseconds scaled(std::chrono::milliseconds ms) {
  double k = 1.0;
  if (const char* m = std::getenv("OTPD_TEST_TIMEOUT_MULTIPLIER"); m != nullptr) {
    k = std::atof(m);
    if (k < 1.0) {
      k = 1.0;
    }
  }
  return std::chrono::milliseconds(static_cast<long>(static_cast<double>(ms.count()) * k));
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + scaled(timeout);
  auto pause = std::chrono::microseconds(50);
  while (true) {
    if (pred()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= end) {
      return pred();
    }
    // Back off from 50 µs to 5 ms between checks of the predicate.
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(5)) {
      pause *= 2;
    }
  }
}

std::string bin_dir() {
  if (const char* d = std::getenv("OTPD_BIN_DIR"); d != nullptr && *d != '\0') {
    return d;
  }
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) {
    return ".";
  }
  buf[n] = '\0';
  return std::filesystem::path(buf).parent_path().string();
}

std::string bin_path(const std::string& name) {
  return bin_dir() + "/" + name;
}

world_exec_copy::world_exec_copy(const std::string& name) : path_(dir_.path() + "/" + name) {
  namespace fs = std::filesystem;
  constexpr auto world_exec = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec;
  // mkdtemp made the directory 0700; /tmp itself is world-searchable.
  fs::permissions(dir_.path(), world_exec);
  fs::copy_file(bin_path(name), path_);
  fs::permissions(path_, world_exec);
}

int count_open_fds() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n - 1;  // the iterator's own fd
}

namespace {
bool read_stat(pid_t pid, char* state, pid_t* ppid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) {
    return false;
  }
  std::string line;
  std::getline(f, line);
  // comm may contain spaces and parentheses: parse after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) {
    return false;
  }
  std::istringstream rest(line.substr(close + 2));
  rest >> *state >> *ppid;
  return true;
}
}  // namespace

std::vector<pid_t> zombie_children() {
  std::vector<pid_t> out;
  pid_t self = ::getpid();
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    char state = 0;
    pid_t ppid = 0;
    pid_t pid = std::atoi(name.c_str());
    if (read_stat(pid, &state, &ppid) && ppid == self && state == 'Z') {
      out.push_back(pid);
    }
  }
  return out;
}

char process_state(pid_t pid) {
  char state = 0;
  pid_t ppid = 0;
  if (!read_stat(pid, &state, &ppid)) {
    return 0;
  }
  return state;
}

bool process_alive(pid_t pid) {
  char s = process_state(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";  // close the quote, an escaped quote, reopen
    } else {
      out += c;
    }
  }
  return out + "'";
}

int send_datagram(const std::string& address, std::string_view data, const std::vector<int>& fds) {
  core::unique_fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  if (!fd) {
    return errno;
  }
  if (address.empty() || address.size() >= sizeof sa.sun_path) {
    return EINVAL;
  }
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, address.data(), address.size());
  if (address[0] == '@') {
    sa.sun_path[0] = '\0';
  }
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr m{};
  m.msg_name = &sa;
  m.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    m.msg_control = ctrl.data();
    m.msg_controllen = ctrl.size();
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(fd.get(), &m, MSG_NOSIGNAL) < 0 ? errno : 0;
}

int sh(const std::string& command) {
  return std::system(command.c_str());
}

bool cgroup_mode_expected() {
  if (::geteuid() != 0) {
    return false;
  }
  // mountinfo: "... - <fstype> <source> <options>" per line.
  std::string mounts = read_file("/proc/self/mountinfo");
  return mounts.find(" - cgroup2 ") != std::string::npos;
}

std::string sh_output(const std::string& command, int* status) {
  std::string out;
  std::fflush(stdout);
  FILE* p = ::popen(command.c_str(), "re");
  if (p == nullptr) {
    if (status != nullptr) {
      *status = -1;
    }
    return out;
  }
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  int st = ::pclose(p);
  if (status != nullptr) {
    *status = st;
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string find_program(std::string_view name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) {
      end = dirs.size();
    }
    std::string candidate = dirs.substr(start, end - start) + "/" + std::string(name);
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

int free_port() {
  core::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return 0;
  }
  return ntohs(a.sin_port);
}

}  // namespace otpd::testing

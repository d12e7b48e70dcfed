#include "cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>

#include <fmt/format.h>

#include <otpd/core/unique_fd.hpp>

namespace otpd::supervisor::detail {
namespace {

// The whole of a small file (cgroup and /proc files), or "" when unreadable.
std::string slurp(const std::string& path) {
  core::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return {};
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

int write_string(const std::string& path, const char* s) {
  core::unique_fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    return errno;
  }
  auto len = static_cast<ssize_t>(std::strlen(s));
  ssize_t n;
  do {
    n = ::write(fd.get(), s, static_cast<std::size_t>(len));
  } while (n < 0 && errno == EINTR);
  return n == len ? 0 : (n < 0 ? errno : EIO);
}

// One cgroup2 mount from /proc/self/mountinfo: where it is and which cgroup
// of the hierarchy its root shows (not "/" in some containers).
struct v2_mount {
  std::string point;
  std::string root;
};

std::vector<v2_mount> v2_mounts() {
  std::vector<v2_mount> out;
  std::istringstream in(slurp("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root point options [optional...] - fstype source super
    auto dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) {
      continue;
    }
    std::istringstream f(line.substr(0, dash));
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    // mountinfo escapes blanks as \040: such a mount point is not ours to use.
    if (point.find('\\') != std::string::npos) {
      continue;
    }
    out.push_back({point, root});
  }
  // /sys/fs/cgroup first: on a pure v2 host that is the one.
  std::stable_partition(out.begin(), out.end(),
                        [](const v2_mount& m) { return m.point == "/sys/fs/cgroup"; });
  return out;
}

// otpd's own cgroup in the v2 hierarchy: the "0::" line of /proc/self/cgroup,
// or the parent of the leaf otpd moved itself into (self_leaf) before a reexec.
std::string own_cgroup() {
  std::istringstream in(slurp("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) {
      std::string own = line.substr(3);
      std::string suffix = std::string("/") + self_leaf;
      if (own.size() > suffix.size() &&
          own.compare(own.size() - suffix.size(), suffix.size(), suffix) == 0) {
        own.resize(own.size() - suffix.size());
      } else if (own == suffix) {
        own = "/";
      }
      return own;
    }
  }
  return {};
}

}  // namespace

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 &&
        std::strcmp(e->d_name, "..") != 0) {
      out.push_back(dir + "/" + e->d_name);
    }
  }
  ::closedir(d);
  return out;
}

std::string read_small_file(const std::string& path) {
  return slurp(path);
}

int write_small_file(const std::string& path, const char* s) {
  return write_string(path, s);
}

std::string v2_own_dir() {
  std::string own = own_cgroup();
  if (own.empty()) {
    return {};
  }
  for (const v2_mount& m : v2_mounts()) {
    if (m.root != "/" && own.rfind(m.root, 0) != 0) {
      continue;
    }
    std::string rel = m.root == "/" ? own : own.substr(m.root.size());
    if (rel == "/") {
      rel.clear();
    }
    if (is_dir(m.point + rel)) {
      return m.point + rel;
    }
  }
  return {};
}

const char* to_string(containment_mode m) noexcept {
  return m == containment_mode::cgroup ? "cgroup" : "pgroup";
}

std::string hash_hex(const std::string& s) {
  std::uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

std::string cgroup_name_of(const std::string& child_path) {
  std::string out = "w-";
  for (unsigned char c : child_path) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  // NAME_MAX is 255; keep well below, and unique by the hash of the path.
  if (out.size() > 200) {
    out = out.substr(0, 180) + "-" + hash_hex(child_path);
  }
  return out;
}

bool needs_leaf(bool is_root, const std::string& controllers, const std::string& subtree_control,
                const std::string& procs, pid_t self) {
  if (is_root) {
    return false;  // the root cgroup may hold processes and enable controllers
  }
  auto words = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string w; in >> w;) {
      out.push_back(w);
    }
    return out;
  };
  std::vector<std::string> offered = words(controllers), enabled = words(subtree_control);
  bool wanted = false;
  for (const char* c : {"memory", "pids", "cpu"}) {
    if (std::find(offered.begin(), offered.end(), c) != offered.end() &&
        std::find(enabled.begin(), enabled.end(), c) == enabled.end()) {
      wanted = true;
    }
  }
  std::vector<std::string> pids = words(procs);
  return wanted && pids.size() == 1 && pids[0] == std::to_string(self);
}

core::Result<cgroup_root> cgroup_root::open(const std::string& runtime_dir) {
  std::string own = own_cgroup();
  if (own.empty()) {
    return {core::errc::not_found, "no cgroup v2 line in /proc/self/cgroup"};
  }

  auto mounts = v2_mounts();
  if (mounts.empty()) {
    return {core::errc::not_found, "no cgroup2 file system is mounted"};
  }
  std::string last_error;
  for (const v2_mount& m : mounts) {
    // The mount shows the hierarchy from m.root down: otpd's cgroup must be
    // inside it (a container may mount only its own subtree).
    std::string rel = own;
    if (m.root != "/") {
      if (own.rfind(m.root, 0) != 0) {
        last_error = fmt::format("otpd's cgroup {} is outside {}", own, m.point);
        continue;
      }
      rel = own.substr(m.root.size());
    }
    if (rel == "/") {
      rel.clear();
    }
    std::string parent = m.point + rel;
    if (!is_dir(parent)) {
      last_error = fmt::format("{} is not a directory", parent);
      continue;
    }
    // Pure v2 with controllers (e.g. a systemd unit with Delegate=yes):
    // otpd leaves the cgroup it shares with nobody for a leaf of it, so
    // that memory, pids and cpu can be enabled for its children's base.
    std::string moved;
    if (needs_leaf(rel.empty(), slurp(parent + "/cgroup.controllers"),
                   slurp(parent + "/cgroup.subtree_control"), slurp(parent + "/cgroup.procs"),
                   ::getpid())) {
      std::string leaf = parent + "/" + self_leaf;
      if ((::mkdir(leaf.c_str(), 0755) == 0 || errno == EEXIST) &&
          write_string(leaf + "/cgroup.procs", std::to_string(::getpid()).c_str()) == 0) {
        moved = leaf;
      }
    }
    std::string base = fmt::format("{}/otpd-{}", parent, hash_hex(runtime_dir));
    if (::mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) {
      last_error = fmt::format("unable to create {}: {}", base, std::strerror(errno));
      continue;
    }
    // cgroup.kill is Linux 5.14+; without it a stop could not be atomic.
    if (::access((base + "/cgroup.kill").c_str(), W_OK) != 0 ||
        ::access((base + "/cgroup.events").c_str(), R_OK) != 0) {
      last_error = fmt::format("{} has no writable cgroup.kill (Linux 5.14+ needed)", base);
      ::rmdir(base.c_str());
      continue;
    }
    cgroup_root r;
    r.base_ = std::move(base);
    r.moved_into_ = std::move(moved);
    return r;
  }
  return {core::errc::access_denied, last_error};
}

std::string cgroup_root::dir_of(const std::string& child_path) const {
  return base_ + "/" + cgroup_name_of(child_path);
}

std::vector<cgroup_leftover> cgroup_root::clean_leftovers(core::deadline until) const {
  std::vector<cgroup_leftover> out;
  std::vector<std::string> dirs = subdirs(base_);
  std::vector<std::string> busy;
  for (const auto& d : dirs) {
    auto pids = cgroup_pids(d);
    if (!pids.empty()) {
      (void)cgroup_kill(d);
      busy.push_back(d);
      out.push_back({d, std::move(pids)});
    }
  }
  (void)cgroup_wait_empty(busy, until);
  for (const auto& d : dirs) {
    ::rmdir(d.c_str());
  }
  return out;
}

void cgroup_root::remove_all(core::deadline until) const {
  std::vector<std::string> dirs = subdirs(base_);
  std::vector<std::string> busy;
  for (const auto& d : dirs) {
    if (cgroup_populated(d)) {
      (void)cgroup_kill(d);
      busy.push_back(d);
    }
  }
  (void)cgroup_wait_empty(busy, until);
  for (const auto& d : dirs) {
    ::rmdir(d.c_str());
  }
  ::rmdir(base_.c_str());
}

core::Result<void> cgroup_make(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return core::errno_code();
  }
  return {};
}

bool cgroup_populated(const std::string& dir) {
  std::string ev = slurp(dir + "/cgroup.events");
  return ev.find("populated 1") != std::string::npos;
}

core::Result<void> cgroup_kill(const std::string& dir) {
  int err = write_string(dir + "/cgroup.kill", "1");
  if (err != 0) {
    return std::error_code(err, std::system_category());
  }
  return {};
}

std::vector<pid_t> cgroup_pids(const std::string& dir) {
  std::vector<pid_t> out;
  std::istringstream in(slurp(dir + "/cgroup.procs"));
  pid_t p;
  while (in >> p) {
    out.push_back(p);
  }
  return out;
}

std::vector<std::string> cgroup_wait_empty(const std::vector<std::string>& dirs,
                                           core::deadline until) {
  std::vector<std::string> left;
  if (dirs.empty()) {
    return left;
  }
  // cgroup.events is modified (IN_MODIFY) when "populated" changes: one
  // inotify fd for all of them, watches added before the check (no lost wake-up).
  core::unique_fd in(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  std::unordered_map<int, std::string> pending;
  for (const auto& d : dirs) {
    int wd = in ? ::inotify_add_watch(in.get(), (d + "/cgroup.events").c_str(), IN_MODIFY) : -1;
    if (wd < 0) {
      continue;  // gone (empty), or no inotify: nothing to wait on
    }
    if (cgroup_populated(d)) {
      pending.emplace(wd, d);
    }
  }
  while (!pending.empty() && !until.expired()) {
    pollfd p{in.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, until.poll_timeout_ms());
    if (rc < 0 && errno != EINTR) {
      break;
    }
    char buf[4096];
    while (::read(in.get(), buf, sizeof buf) > 0) {
    }
    for (auto it = pending.begin(); it != pending.end();) {
      it = cgroup_populated(it->second) ? std::next(it) : pending.erase(it);
    }
  }
  for (auto& [wd, d] : pending) {
    left.push_back(d);
  }
  return left;
}

}  // namespace otpd::supervisor::detail

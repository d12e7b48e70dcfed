#include "limits.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>
#include <tuple>

#include "cgroup.hpp"
#include <fmt/format.h>

namespace otpd::supervisor::detail {
namespace {

constexpr std::uint64_t cpu_period_us = 100000;  // cpu.max / cfs_period_us: 100 ms

bool has_word(const std::string& list, const std::string& word, char sep) {
  std::istringstream in(list);
  for (std::string w; std::getline(in, w, sep);) {
    while (!w.empty() && (w.back() == '\n' || w.back() == ' ')) {
      w.pop_back();
    }
    if (w == word) {
      return true;
    }
  }
  return false;
}

bool has_controller(const std::string& file, const std::string& c) {
  return has_word(read_small_file(file), c, ' ');
}

// "key N" in a flat-keyed cgroup file (memory.events, cpu.stat, memory.oom_control).
std::optional<std::uint64_t> keyed(const std::string& file, const std::string& key) {
  std::istringstream in(read_small_file(file));
  std::string k;
  std::uint64_t v = 0;
  while (in >> k >> v) {
    if (k == key) {
      return v;
    }
  }
  return std::nullopt;
}

// A file holding one number ("max" or unreadable: none).
std::optional<std::uint64_t> number(const std::string& file) {
  std::string s = read_small_file(file);
  if (s.empty() || s[0] < '0' || s[0] > '9') {
    return std::nullopt;
  }
  return std::strtoull(s.c_str(), nullptr, 10);
}

std::vector<pid_t> procs_of(const std::string& dir) {
  std::vector<pid_t> out;
  std::istringstream in(read_small_file(dir + "/cgroup.procs"));
  for (pid_t p; in >> p;) {
    out.push_back(p);
  }
  return out;
}

// A v1 hierarchy of otpd: the controllers of a /proc/self/cgroup line, its
// mount (from mountinfo: fstype cgroup, the controllers in the super
// options) and otpd's cgroup there.
struct v1_found {
  std::string controllers;
  std::string own_dir;  // <mount><otpd's cgroup>
};

std::vector<v1_found> v1_hierarchies() {
  struct mount {
    std::string point, root, options;
  };
  std::vector<mount> mounts;
  std::istringstream mi(read_small_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(mi, line);) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 7, "cgroup ") != 0) {
      continue;
    }
    std::istringstream f(line.substr(0, dash));
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype, source, options;
    tail >> fstype >> source >> options;
    if (point.find('\\') == std::string::npos) {
      mounts.push_back({point, root, options});
    }
  }
  std::vector<v1_found> out;
  std::istringstream pc(read_small_file("/proc/self/cgroup"));
  for (std::string line; std::getline(pc, line);) {
    // N:controllers:path; "0::path" is v2, "N:name=systemd:path" no controller.
    auto c1 = line.find(':');
    auto c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string::npos || c2 == c1 + 1) {
      continue;
    }
    std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
    std::string path = line.substr(c2 + 1);
    std::string first = controllers.substr(0, controllers.find(','));
    if (first.rfind("name=", 0) == 0) {
      continue;
    }
    for (const auto& m : mounts) {
      if (!has_word(m.options, first, ',')) {
        continue;
      }
      if (m.root != "/" && path.rfind(m.root, 0) != 0) {
        continue;
      }
      std::string rel = m.root == "/" ? path : path.substr(m.root.size());
      if (rel == "/") {
        rel.clear();
      }
      out.push_back({controllers, m.point + rel});
      break;
    }
  }
  return out;
}

int write_value(const std::string& file, const std::string& v) {
  return write_small_file(file, v.c_str());
}

std::string cpu_quota(double cores) {
  auto q = static_cast<std::uint64_t>(std::llround(cores * static_cast<double>(cpu_period_us)));
  return std::to_string(std::max<std::uint64_t>(q, 1000));
}

// Walks every worker spec of the tree (templates included).
template <class F>
void for_each_worker(const child_spec& c, const F& f) {
  if (!c.is_supervisor) {
    f(*c.worker);
    return;
  }
  for (const auto& k : c.sup.children) {
    for_each_worker(k, f);
  }
  if (c.sup.child_template) {
    for_each_worker(*c.sup.child_template, f);
  }
}

}  // namespace

const char* to_string(resource r) noexcept {
  switch (r) {
    case resource::memory:
      return "memory";
    case resource::cpu:
      return "cpu";
    case resource::pids:
      return "pids";
  }
  return "?";
}

limit_controllers limit_controllers::open(const std::string& v2_base,
                                          const std::string& runtime_dir, bool use_v1) {
  limit_controllers l;
  l.v2_base_ = v2_base;
  if (v2_base.empty()) {
    l.v2_why_not_ = use_v1 ? "no cgroup v2 hierarchy in use" : "--containment pgroup";
  } else {
    // Controllers reach the base only through otpd's own cgroup: enable them
    // there first where it is allowed (it fails with EBUSY when processes
    // live in it, otpd itself included: the no-internal-process rule).
    std::string own = v2_base.substr(0, v2_base.rfind('/'));
    for (const char* c : {"memory", "pids", "cpu"}) {
      if (!has_controller(v2_base + "/cgroup.controllers", c) &&
          has_controller(own + "/cgroup.controllers", c)) {
        (void)write_small_file(own + "/cgroup.subtree_control", fmt::format("+{}", c).c_str());
      }
    }
    for (const char* c : {"memory", "pids", "cpu"}) {
      bool on = has_controller(v2_base + "/cgroup.subtree_control", c) ||
                (has_controller(v2_base + "/cgroup.controllers", c) &&
                 write_small_file(v2_base + "/cgroup.subtree_control",
                                  fmt::format("+{}", c).c_str()) == 0);
      (std::strcmp(c, "memory") == 0 ? l.v2_memory_
                                     : (std::strcmp(c, "pids") == 0 ? l.v2_pids_ : l.v2_cpu_)) = on;
    }
    l.v2_why_not_ = fmt::format("not among the cgroup v2 controllers of {} ({})", v2_base,
                                read_small_file(v2_base + "/cgroup.controllers").empty()
                                    ? "none"
                                    : "see its cgroup.controllers");
  }
  if (use_v1) {
    std::string key = "otpd-" + hash_hex(runtime_dir);
    for (const auto& h : v1_hierarchies()) {
      v1_hierarchy v;
      v.controllers = h.controllers;
      v.base = h.own_dir + "/" + key;
      if (!is_dir(h.own_dir) || ::access(h.own_dir.c_str(), W_OK) != 0) {
        v.why_not = fmt::format("{} is not writable", h.own_dir);
      }
      l.v1_.push_back(std::move(v));
    }
  }
  return l;
}

const limit_controllers::v1_hierarchy* limit_controllers::v1_of(const char* controller) const {
  for (const auto& h : v1_) {
    if (has_word(h.controllers, controller, ',')) {
      return &h;
    }
  }
  return nullptr;
}

std::string limit_controllers::why_not(resource r) const {
  bool v2 = r == resource::memory ? v2_memory_ : (r == resource::pids ? v2_pids_ : v2_cpu_);
  if (v2) {
    return {};
  }
  const v1_hierarchy* h = v1_of(to_string(r));
  if (h != nullptr && h->why_not.empty()) {
    return {};
  }
  std::string v1 = v1_.empty() && v2_why_not_ == "--containment pgroup" ? std::string()
                   : h == nullptr ? fmt::format("; no cgroup v1 hierarchy of {}", to_string(r))
                                  : "; cgroup v1: " + h->why_not;
  return fmt::format("no cgroup controller can enforce it here ({}: {}{})", to_string(r),
                     v2_why_not_, v1);
}

std::string limit_controllers::check(const config& c) const {
  std::string out;
  auto one = [&](const std::string& at, resource r) {
    if (at.empty()) {
      return;
    }
    if (std::string why = why_not(r); !why.empty()) {
      out += (out.empty() ? "" : "\n") + at + ": " + why;
    }
  };
  for_each_worker(c.root, [&](const worker_spec& w) {
    one(w.limits.at_memory, resource::memory);
    one(w.limits.at_cpu, resource::cpu);
    one(w.limits.at_pids, resource::pids);
  });
  return out;
}

std::string limit_controllers::dir_in(const v1_hierarchy& h, const std::string& child_path) {
  return h.base + "/" + cgroup_name_of(child_path);
}

core::Result<prepared_limits> limit_controllers::prepare(const std::string& child_path,
                                                         const std::string& v2_dir,
                                                         const limits_spec& l) {
  prepared_limits out;
  auto failed = [&](const std::string& file, int err) -> core::Result<prepared_limits> {
    return {std::error_code(err, std::system_category()),
            fmt::format("unable to set {}: {}", file, std::strerror(err))};
  };
  // v2: the limits, or "max" where an earlier spec of this worker set one.
  if (!v2_dir.empty() && (l.any() || v2_limited_.count(v2_dir) != 0)) {
    auto put = [&](bool on, const char* file, const std::string& v) {
      return on ? write_value(v2_dir + "/" + file, v) : 0;
    };
    std::string mem = l.memory_bytes != 0 ? std::to_string(l.memory_bytes) : "max";
    std::string cpu = l.cpu_cores != 0
                          ? cpu_quota(l.cpu_cores) + " " + std::to_string(cpu_period_us)
                          : "max " + std::to_string(cpu_period_us);
    std::string pids = l.pids != 0 ? std::to_string(l.pids) : "max";
    for (auto [on, file, v] :
         {std::tuple{v2_memory_, "memory.max", mem}, std::tuple{v2_cpu_, "cpu.max", cpu},
          std::tuple{v2_pids_, "pids.max", pids}}) {
      if (int err = put(on, file, v); err != 0) {
        return failed(v2_dir + "/" + file, err);
      }
    }
    if (l.any()) {
      v2_limited_.insert(v2_dir);
    } else {
      v2_limited_.erase(v2_dir);
    }
  }
  if (!l.any()) {
    return out;
  }
  // v1: a worker with limits joins every v1 hierarchy of what v2 does not
  // give, for the limits and the figures alike.
  struct want {
    const char* controller;
    bool in_v2;
    std::string* dir;
  };
  std::vector<std::string> joined;
  for (auto [controller, in_v2, dir] :
       {want{"memory", v2_memory_, &out.v1.memory}, want{"pids", v2_pids_, &out.v1.pids},
        want{"cpu", v2_cpu_, &out.v1.cpu}, want{"cpuacct", v2_cpu_, &out.v1.cpuacct}}) {
    const v1_hierarchy* h = in_v2 ? nullptr : v1_of(controller);
    if (h == nullptr || !h->why_not.empty()) {
      continue;
    }
    *dir = dir_in(*h, child_path);
    if (std::find(joined.begin(), joined.end(), *dir) != joined.end()) {
      continue;  // cpu,cpuacct mounted together: one directory, joined once
    }
    joined.push_back(*dir);
    for (const std::string& d : {h->base, *dir}) {
      if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
        return failed(d, errno);
      }
    }
    int err = 0;
    if (std::strcmp(controller, "memory") == 0) {
      err = write_value(*dir + "/memory.limit_in_bytes",
                        l.memory_bytes != 0 ? std::to_string(l.memory_bytes) : "-1");
      // The peak of this run, not of an earlier one in the same cgroup.
      (void)write_value(*dir + "/memory.max_usage_in_bytes", "0");
    } else if (std::strcmp(controller, "pids") == 0) {
      err = write_value(*dir + "/pids.max", l.pids != 0 ? std::to_string(l.pids) : "max");
    } else if (std::strcmp(controller, "cpu") == 0) {
      err = write_value(*dir + "/cpu.cfs_period_us", std::to_string(cpu_period_us));
      if (err == 0) {
        err = write_value(*dir + "/cpu.cfs_quota_us",
                          l.cpu_cores != 0 ? cpu_quota(l.cpu_cores) : "-1");
      }
    }
    if (err != 0) {
      return failed(*dir, err);
    }
    core::unique_fd fd(::open((*dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) {
      return failed(*dir + "/cgroup.procs", errno);
    }
    out.join.push_back(std::move(fd));
  }
  if (l.memory_bytes != 0) {
    out.oom_kills = oom_kills(v2_dir, out.v1);
  }
  return out;
}

std::optional<std::uint64_t> limit_controllers::oom_kills(const std::string& v2_dir,
                                                          const v1_dirs& v1) const {
  if (v2_memory_ && !v2_dir.empty()) {
    return keyed(v2_dir + "/memory.events", "oom_kill");
  }
  if (!v1.memory.empty()) {
    return keyed(v1.memory + "/memory.oom_control", "oom_kill");
  }
  return std::nullopt;
}

resource_figures limit_controllers::figures(const std::string& v2_dir, const v1_dirs& v1) const {
  resource_figures f;
  if (!v2_dir.empty()) {
    // cpu.stat is there with or without the cpu controller.
    f.cpu_usec = keyed(v2_dir + "/cpu.stat", "usage_usec");
  }
  if (!f.cpu_usec && !v1.cpuacct.empty()) {
    if (auto ns = number(v1.cpuacct + "/cpuacct.usage")) {
      f.cpu_usec = *ns / 1000;
    }
  }
  if (v2_memory_ && !v2_dir.empty()) {
    f.memory_current = number(v2_dir + "/memory.current");
    f.memory_peak = number(v2_dir + "/memory.peak");  // Linux 5.19+
  } else if (!v1.memory.empty()) {
    f.memory_current = number(v1.memory + "/memory.usage_in_bytes");
    f.memory_peak = number(v1.memory + "/memory.max_usage_in_bytes");
  }
  if (v2_pids_ && !v2_dir.empty()) {
    f.pids_current = number(v2_dir + "/pids.current");
  } else if (!v1.pids.empty()) {
    f.pids_current = number(v1.pids + "/pids.current");
  }
  return f;
}

void limit_controllers::remove(const v1_dirs& v1) {
  for (const std::string* d : {&v1.memory, &v1.pids, &v1.cpu, &v1.cpuacct}) {
    if (!d->empty()) {
      ::rmdir(d->c_str());
    }
  }
}

std::vector<std::pair<std::string, std::vector<pid_t>>> limit_controllers::clean_leftovers(
    core::deadline until) const {
  std::vector<std::pair<std::string, std::vector<pid_t>>> out;
  std::vector<std::string> dirs;
  for (const auto& h : v1_) {
    for (auto& d : subdirs(h.base)) {
      dirs.push_back(std::move(d));
    }
  }
  // v1 has no cgroup.kill: SIGKILL to each pid. In cgroup mode the v2
  // leftovers (the same processes) are killed before this, so these are
  // usually empty already; a pid read here belongs to the cgroup until it
  // is reaped, and orphans are re-parented to otpd (a subreaper), which
  // reaps them, so the window for a reused pid is the kill itself.
  for (const auto& d : dirs) {
    auto pids = procs_of(d);
    for (pid_t p : pids) {
      ::kill(p, SIGKILL);
    }
    if (!pids.empty()) {
      out.emplace_back(d, std::move(pids));
    }
  }
  for (const auto& d : dirs) {
    // rmdir fails with EBUSY until the last process is gone: poll briefly.
    while (::rmdir(d.c_str()) != 0 && errno == EBUSY && !until.expired()) {
      timespec ts{0, 10000000L};
      ::nanosleep(&ts, nullptr);
    }
  }
  return out;
}

void limit_controllers::remove_all(core::deadline until) const {
  (void)clean_leftovers(until);
  for (const auto& h : v1_) {
    ::rmdir(h.base.c_str());
  }
}

std::string check_limits_for(const config& c, containment_choice choice) {
  bool any = false;
  for_each_worker(c.root, [&](const worker_spec& w) { any = any || w.limits.any(); });
  if (!any) {
    return {};
  }
  // What open() would find, without making anything: the v2 controllers
  // the base would get from otpd's own cgroup (enabled there already, or
  // enablable because it is the hierarchy's root), and the v1 hierarchies.
  limit_controllers l;
  if (choice == containment_choice::pgroup) {
    l.v2_why_not_ = "--containment pgroup";
    return l.check(c);
  }
  std::string own = v2_own_dir();
  if (own.empty()) {
    l.v2_why_not_ = "no cgroup v2 hierarchy";
  } else {
    // The root cgroup (no cgroup.type) may hold processes and enable controllers.
    bool root_cgroup = ::access((own + "/cgroup.type").c_str(), F_OK) != 0;
    bool writable = ::access(own.c_str(), W_OK) == 0;
    for (const char* c2 : {"memory", "pids", "cpu"}) {
      bool on = writable && (has_controller(own + "/cgroup.subtree_control", c2) ||
                             (root_cgroup && has_controller(own + "/cgroup.controllers", c2)));
      (std::strcmp(c2, "memory") == 0 ? l.v2_memory_
                                      : (std::strcmp(c2, "pids") == 0 ? l.v2_pids_ : l.v2_cpu_)) =
          on;
    }
    l.v2_why_not_ = fmt::format("not enabled for otpd's cgroup {}", own);
  }
  for (const auto& h : v1_hierarchies()) {
    limit_controllers::v1_hierarchy v;
    v.controllers = h.controllers;
    if (!is_dir(h.own_dir) || ::access(h.own_dir.c_str(), W_OK) != 0) {
      v.why_not = fmt::format("{} is not writable", h.own_dir);
    }
    l.v1_.push_back(std::move(v));
  }
  return l.check(c);
}

}  // namespace otpd::supervisor::detail

namespace otpd::supervisor {

std::string check_limits(const config& c, containment_choice choice) {
  return detail::check_limits_for(c, choice);
}

}  // namespace otpd::supervisor

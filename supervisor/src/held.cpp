// The operator's intent survives otpd: a child stopped with `otpctl stop`
// stays stopped when otpd starts again on the same runtime dir, until
// `otpctl start` (or restart). The list lives in the runtime dir (0700,
// otpd's own), one child path a line, replaced atomically on each change.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "node_daemon.hpp"
#include <fmt/format.h>

#include <otpd/core/log.hpp>
#include <otpd/protocol/layout.hpp>

namespace otpd::supervisor::detail {

namespace {

// Bounded like a config: 100k paths of at most a few hundred bytes.
constexpr std::size_t max_held_bytes = 16u << 20;

}  // namespace

void node_daemon::load_holds() {
  std::string path = protocol::layout::held_file(dir_);
  core::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno != ENOENT) {
      core::log_warn("otpd: unable to read {}: {}; every child starts", path, std::strerror(errno));
    }
    return;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
      static_cast<std::size_t>(st.st_size) > max_held_bytes) {
    core::log_warn("otpd: {} is not a regular file of ours under {} bytes; ignored", path,
                   max_held_bytes);
    return;
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  std::vector<std::string> paths;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? text.size() : nl + 1;
    if (line.empty()) {
      continue;
    }
    if (auto n = tree_->resolve(line); n && (*n)->path == line) {
      paths.push_back(line);
    } else {
      core::log_info("otpd: {} was stopped by an operator but is no longer in the config", line);
    }
  }
  for (const auto& p : paths) {
    core::log_info("otpd: {} stays stopped: an operator stopped it (otpctl start {} starts it)", p,
                   p);
  }
  tree_->hold_at_start(paths);
  saved_holds_ = std::move(paths);
}

void node_daemon::save_holds() {
  holds_dirty_ = false;
  std::vector<std::string> now = tree_->held_paths();
  if (now == saved_holds_) {
    return;
  }
  std::string path = protocol::layout::held_file(dir_);
  if (now.empty()) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      core::log_warn("otpd: unable to remove {}: {}", path, std::strerror(errno));
      return;
    }
    saved_holds_.clear();
    return;
  }
  std::string text;
  for (const auto& p : now) {
    text += p;
    text += '\n';
  }
  // Write a new file and rename it over the old one: a crash in between
  // leaves the old list or the new one, never half of one.
  std::string tmp = path + ".new";
  ::unlink(tmp.c_str());
  core::unique_fd fd(
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  bool ok = static_cast<bool>(fd);
  std::size_t off = 0;
  while (ok && off < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    ok = n > 0;
    off += n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  ok = ok && ::fsync(fd.get()) == 0;
  fd.reset();
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    core::log_warn("otpd: unable to save the stopped children to {}: {}", path,
                   std::strerror(errno));
    ::unlink(tmp.c_str());
    return;
  }
  saved_holds_ = std::move(now);
}

}  // namespace otpd::supervisor::detail

// The name registry: names/<name> is a symlink to ../mbox/<pid>, so a name
// resolves with one readlink and follows a restarted holder atomically.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "detail.hpp"

#include <otpd/runtime/process.hpp>

namespace otpd::runtime {

namespace detail {

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || n == "." || n == "..") {
    return false;
  }
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

}  // namespace

Result<void> context::register_name(const std::string& name) {
  if (!valid_name(name)) {
    return errc::invalid_argument;
  }
  if (!listen_) {
    if (auto i = ensure_init(); !i) {
      return i;
    }
  }
  std::string target = protocol::layout::name_target(self_);
  std::string tmp = protocol::layout::names_dir(dir_) + "/.new." + std::to_string(self_);
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    return errno_code();
  }
  // rename() replaces a stale holder atomically: the name follows a
  // restarted process without a moment where it resolves to nothing.
  if (::rename(tmp.c_str(), protocol::layout::name_link(dir_, name).c_str()) != 0) {
    auto ec = errno_code();
    ::unlink(tmp.c_str());
    return ec;
  }
  if (std::find(names_.begin(), names_.end(), name) == names_.end()) {
    names_.push_back(name);
  }
  return {};
}

Result<void> context::unregister_name(const std::string& name) {
  auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) {
    return errc::not_found;
  }
  names_.erase(it);
  ::unlink(protocol::layout::name_link(dir_, name).c_str());
  return {};
}

Result<pid_t> context::whereis(const std::string& name) {
  if (auto i = ensure_dir(); !i) {
    return i.error();
  }
  if (!valid_name(name)) {
    return errc::invalid_argument;
  }
  char buf[256];
  ssize_t n = ::readlink(protocol::layout::name_link(dir_, name).c_str(), buf, sizeof buf - 1);
  if (n <= 0) {
    return errc::noproc;
  }
  buf[n] = '\0';
  const char* slash = std::strrchr(buf, '/');
  auto pid = static_cast<pid_t>(std::atol(slash != nullptr ? slash + 1 : buf));
  if (pid <= 0) {
    return errc::noproc;
  }
  // A name whose holder died without cleaning up (SIGKILL) is not a name.
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return errc::noproc;
  }
  return pid;
}

}  // namespace detail

using detail::ctx;

Result<void> register_name(const std::string& name) {
  return ctx().register_name(name);
}
Result<void> unregister_name(const std::string& name) {
  return ctx().unregister_name(name);
}
Result<pid_t> whereis(const std::string& name) {
  return ctx().whereis(name);
}

}  // namespace otpd::runtime

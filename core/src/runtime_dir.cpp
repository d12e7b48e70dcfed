#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::core {

std::string default_runtime_dir() {
  if (const char* d = std::getenv("OTPD_RUNTIME_DIR"); d != nullptr && *d != '\0') {
    return d;
  }
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0') {
    return std::string(x) + "/otpd";
  }
  return "/tmp/otpd-" + std::to_string(::getuid());
}

Result<void> ensure_private_dir(const std::string& dir) {
  if (dir.empty()) {
    return errc::invalid_argument;
  }
  // mkdir -p, each missing component 0700.
  for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos == dir.size() || dir[pos] == '/') {
      std::string part = dir.substr(0, pos);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return errno_code();
      }
    }
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    return errno_code();
  }
  if (!S_ISDIR(st.st_mode)) {
    return errno_code(ENOTDIR);
  }
  if (st.st_uid != ::geteuid()) {
    return errc::access_denied;
  }
  if ((st.st_mode & 0077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    return errno_code();
  }
  return {};
}

Result<void> write_file_atomic(const std::string& path, const std::string& data, unsigned mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) {
    return errno_code();
  }
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int e = errno;
      ::unlink(tmp.c_str());
      return errno_code(e);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return errno_code(e);
  }
  return {};
}

temp_dir::temp_dir(std::string_view prefix) {
  std::string tmpl = "/tmp/" + std::string(prefix) + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
  }
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace otpd::core

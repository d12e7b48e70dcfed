#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include <otpd/core/runtime_dir.hpp>
#include <otpd/observer/web_files.hpp>

namespace otpd::observer {

namespace {

constexpr std::size_t token_bytes = 32;

bool well_formed(const std::string& t) {
  return t.size() == token_bytes * 2 &&
         t.find_first_not_of("0123456789abcdef") == std::string::npos;
}

core::Result<std::string> read_small(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return {core::errno_code(errno == 0 ? ENOENT : errno), "unable to read " + path};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

}  // namespace

std::string web_token_file(const std::string& runtime_dir) {
  return runtime_dir + "/web.token";
}
std::string web_url_file(const std::string& runtime_dir) {
  return runtime_dir + "/web.url";
}

core::Result<std::string> web_login_url(const std::string& runtime_dir) {
  auto url = read_small(web_url_file(runtime_dir));
  if (!url) {
    return {url.error(), url.message() + " (is otpd-web running?)"};
  }
  auto token = read_small(web_token_file(runtime_dir));
  if (!token) {
    return token.fail();
  }
  std::string u = *url;
  if (u.empty() || u.back() != '/') {
    u += "/";
  }
  return u + "?token=" + *token;
}

core::Result<std::string> load_or_create_token(const std::string& runtime_dir) {
  std::string path = web_token_file(runtime_dir);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
      (st.st_mode & 077) == 0) {
    if (auto t = read_small(path); t && well_formed(*t)) {
      return *t;
    }
  }
  unsigned char raw[token_bytes];
  std::size_t got = 0;
  while (got < sizeof raw) {
    ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return {core::errno_code(), "unable to get random bytes for the token"};
    }
    got += static_cast<std::size_t>(n);
  }
  static const char hex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : raw) {
    token.push_back(hex[b >> 4]);
    token.push_back(hex[b & 15]);
  }
  if (auto r = core::write_file_atomic(path, token + "\n", 0600); !r) {
    return {r.error(), "unable to write " + path + ": " + r.message()};
  }
  return token;
}

}  // namespace otpd::observer

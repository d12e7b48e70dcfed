#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <otpd/supervisor/control_client.hpp>
#include <otpd/supervisor/daemon.hpp>

namespace otpd::supervisor {

core::Result<void> control_client::connect(const std::string& runtime_dir) {
  std::string path = control_socket_path(runtime_dir);
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) {
    return core::errno_code(ENAMETOOLONG);
  }
  fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd_) {
    return core::errno_code();
  }
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    auto ec = core::errno_code();
    fd_.reset();
    return ec;
  }
  // Before a byte is sent: whoever listens there must be otpd as root or as
  // us. A socket another user made (a runtime dir they pre-created, a
  // --runtime-dir pointing at theirs) would otherwise get our commands and
  // could answer anything.
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    auto ec = core::errno_code();
    fd_.reset();
    return ec;
  }
  peer_uid_ = cred.uid;
  peer_pid_ = cred.pid;
  if (cred.uid != 0 && cred.uid != ::geteuid()) {
    fd_.reset();
    return core::errc::access_denied;
  }
  return {};
}

core::Result<void> control_client::send_line(const std::string& line) {
  std::string data = line + "\n";
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return core::errno_code();
    }
    off += static_cast<std::size_t>(n);
  }
  return {};
}

core::Result<std::string> control_client::read_line() {
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    char tmp[65536];
    ssize_t n = ::read(fd_.get(), tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return core::errno_code();
    }
    if (n == 0) {
      return core::errc::closed;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
}

core::Result<std::string> control_client::request(const std::string& line) {
  if (auto r = send_line(line); !r) {
    return r.error();
  }
  return read_line();
}

core::Result<protocol::json> control_client::call(const protocol::json& request) {
  // replace: an id from the command line may be any bytes; never a throw.
  auto line = this->request(protocol::dump_json(request));
  if (!line) {
    return line.error();
  }
  protocol::json reply = protocol::parse_json(*line);
  if (reply.is_discarded() || !reply.is_object()) {
    return core::errc::malformed;
  }
  return reply;
}

}  // namespace otpd::supervisor

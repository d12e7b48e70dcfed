// Asks the node's otpd how a process that is not our child ended, with the
// control protocol's exit-reason request (otpd::protocol, docs/PROTOCOL.md):
// the runtime's only client of the control socket.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "detail.hpp"
#include <nlohmann/json.hpp>

#include <otpd/core/clock.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/protocol/control.hpp>
#include <otpd/protocol/layout.hpp>

namespace otpd::runtime::detail {

// Only a parent can read an exit status. Under otpd the daemon is the parent
// of every worker: ask it over the control socket (it keeps recent exits).
// It may reap a moment after we saw the pidfd fire, so ask a few times, for
// at most ~200 ms; without a daemon the reason is simply unknown.
exit_reason ask_otpd_exit_reason(const std::string& runtime_dir, pid_t pid) {
  std::string path = protocol::layout::control_socket(runtime_dir);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path || ::access(path.c_str(), F_OK) != 0) {
    return {exit_kind::unknown, 0};
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  auto until = deadline::after(std::chrono::milliseconds(200));
  std::string request = protocol::dump_json(protocol::exit_reason_request{pid}.to_json()) + "\n";
  while (!until.expired()) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return {exit_kind::unknown, 0};
    }
    // The answer decides whether a link kills its partner: take it only
    // from an otpd running as root or as us (as otpctl does).
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != 0 && cred.uid != ::geteuid())) {
      return {exit_kind::unknown, 0};
    }
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return {exit_kind::unknown, 0};
    }
    std::string line;
    char buf[512];
    while (line.find('\n') == std::string::npos) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, until.poll_timeout_ms()) <= 0) {
        return {exit_kind::unknown, 0};
      }
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) {
        return {exit_kind::unknown, 0};
      }
      line.append(buf, static_cast<std::size_t>(n));
    }
    auto j = protocol::parse_json(std::string_view(line).substr(0, line.find('\n')));
    if (!j.is_object() || !protocol::is_ok(j)) {
      return {exit_kind::unknown, 0};
    }
    try {
      auto reply = protocol::exit_reason_reply::from_json(j);
      if (reply.reason) {
        return *reply.reason;
      }
    } catch (const nlohmann::json::exception&) {
      return {exit_kind::unknown, 0};  // a reply we cannot read says nothing
    }
    ::poll(nullptr, 0, 5);  // not reaped yet: ask again shortly
  }
  return {exit_kind::unknown, 0};
}

}  // namespace otpd::runtime::detail

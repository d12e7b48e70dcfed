#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include <otpd/core/spawn.hpp>
#include <otpd/testing/redis_server.hpp>

namespace otpd::testing {

namespace {

bool wait_readable(int fd, std::chrono::milliseconds timeout) {
  struct pollfd p {};
  p.fd = fd;
  p.events = POLLIN;
  int rc = 0;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc == 1;
}

}  // namespace

redis_server::redis_server() : unix_path_(dir_.path() + "/redis.sock") {
  port_ = free_port();
  (void)start();
}

redis_server::~redis_server() {
  stop();
}

bool redis_server::start() {
  if (running()) {
    return true;
  }
  error_.clear();
  std::string exe = find_program("redis-server");
  if (exe.empty()) {
    error_ =
        "redis-server is not installed (not found in PATH): this needs a real Redis; install it "
        "with scripts/setup.sh (Debian package redis-server)";
    return false;
  }
  // A port taken by someone else in the meantime: pick another (only before
  // the first start; restarts must keep the port the clients know).
  for (int tries = 0; tries < 3; ++tries) {
    core::spawn_options o;
    o.argv = {exe,
              "--port",
              std::to_string(port_),
              "--bind",
              "127.0.0.1",
              "--unixsocket",
              unix_path_,
              "--unixsocketperm",
              "700",
              "--dir",
              dir_.path(),
              "--save",
              "",
              "--appendonly",
              "no",
              "--daemonize",
              "no",
              "--logfile",
              dir_.path() + "/redis.log",
              "--databases",
              "4"};
    o.search_path = false;
    o.fds = {{-1, 0}};
    auto child = core::spawn(o);
    if (!child) {
      error_ = "unable to start " + exe + ": " + child.error().message();
      return false;
    }
    pid_ = child->pid;
    pidfd_ = std::move(child->pidfd);
    paused_ = false;
    bool up = wait_until(
        [&] {
          if (core::try_reap(pidfd_.get())) {
            pid_ = -1;  // it exited (port taken?)
            return true;
          }
          return ping();
        },
        std::chrono::milliseconds(10000));
    if (up && pid_ > 0) {
      return true;
    }
    if (pid_ > 0) {
      kill();
      error_ =
          "redis-server did not answer PING in time; log: " + read_file(dir_.path() + "/redis.log");
      return false;
    }
    pidfd_.reset();
    port_ = free_port();
  }
  error_ = "redis-server exited at start; log: " + read_file(dir_.path() + "/redis.log");
  return false;
}

void redis_server::reap_now() {
  if (pid_ > 0) {
    core::reap(pidfd_.get());
  }
  pidfd_.reset();
  pid_ = -1;
  paused_ = false;
}

void redis_server::stop() {
  if (!running()) {
    return;
  }
  if (paused_) {
    ::kill(pid_, SIGCONT);
  }
  (void)core::kill_and_reap(
      pid_, SIGTERM, core::deadline::after(scaled(std::chrono::milliseconds(5000))), pidfd_.get());
  pidfd_.reset();
  pid_ = -1;
  paused_ = false;
}

void redis_server::kill() {
  if (!running()) {
    return;
  }
  ::kill(pid_, SIGKILL);
  reap_now();
}

void redis_server::pause() {
  if (running() && ::kill(pid_, SIGSTOP) == 0) {
    paused_ = true;
  }
}

void redis_server::resume() {
  if (running() && ::kill(pid_, SIGCONT) == 0) {
    paused_ = false;
  }
}

bool redis_server::ping(std::chrono::milliseconds timeout) const {
  core::unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) {
    return false;
  }
  struct sockaddr_un a {};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, unix_path_.c_str(), sizeof a.sun_path - 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return false;
  }
  static constexpr char ping_cmd[] = "PING\r\n";
  if (::send(s.get(), ping_cmd, sizeof ping_cmd - 1, MSG_NOSIGNAL) !=
      static_cast<ssize_t>(sizeof ping_cmd - 1)) {
    return false;
  }
  std::string got;
  char buf[64];
  while (got.size() < 7) {
    if (!wait_readable(s.get(), timeout)) {
      return false;
    }
    ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n <= 0) {
      return false;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got.rfind("+PONG\r\n", 0) == 0;
}

}  // namespace otpd::testing

// otpd_test_child: a real program for tests to spawn and supervise. Its
// arguments are a script of actions run in order, e.g.
//   otpd_test_child stamp /tmp/t ready sleep
//   otpd_test_child ignore-term wait 50 exit 3
// Actions:
//   stamp PATH          append "<pid> <CLOCK_MONOTONIC ns>\n" to PATH (first thing)
//   pidfile PATH        write our pid to PATH atomically
//   ready               write "\n" to the fd named by $OTPD_READY_FD, if any
//   wait MS             sleep MS milliseconds (the program's own pace)
//   ignore-term         ignore SIGTERM from now on
//   on-term PATH        on SIGTERM: write "term\n" to PATH, then exit 0
//   grandchild PATH     fork a child in our process group that sleeps forever; its pid to PATH
//   grandchild-setsid PATH  the same, but the grandchild leaves our process group (setsid)
//   print TEXT / eprint TEXT  a line to stdout / stderr
//   write TEXT          TEXT to stdout as is, no newline added; \n, \\ and \xHH are decoded
//   spam N              N lines of 100 bytes to stdout
//   exit N              exit with code N
//   crash               SIGSEGV (no core file, whatever handler a sanitizer set)
//   abort               abort() (no core file)
//   alloc MB            allocate MB MiB and touch every page (kept until exit)
//   forks N PATH        fork N children that sleep in our group; then write
//                       "forked K errno E\n" to PATH (K made, E of the first failure)
//   spin MS             burn CPU for MS milliseconds
//   notify TEXT         TEXT (decoded as for write) as one datagram to $NOTIFY_SOCKET
//                       (sd_notify: a path, or '@' for the abstract namespace)
//   notify-child TEXT   the same from a forked child (its own pid), which then waits
//                       for the manager (sd_notify_barrier) and exits; waited for
//   notify-setsid-child TEXT  the same from a child that left our process group (setsid)
//   pings MS N          N datagrams "WATCHDOG=1", one every MS milliseconds
//   sleep               sleep until killed
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <otpd/core/ready.hpp>

namespace {

long long now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) {
      return;
    }
    off += static_cast<std::size_t>(n);
  }
}

void write_pidfile(const std::string& path, pid_t pid) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return;
  }
  write_all(fd, std::to_string(pid) + "\n");
  close(fd);
  rename(tmp.c_str(), path.c_str());
}

// \n, \\ and \xHH of a command-line argument.
std::string decode(const std::string& in) {
  std::string out;
  for (std::size_t k = 0; k < in.size(); ++k) {
    if (in[k] != '\\' || k + 1 >= in.size()) {
      out += in[k];
    } else if (in[k + 1] == 'n') {
      out += '\n';
      ++k;
    } else if (in[k + 1] == 'x' && k + 3 < in.size()) {
      out += static_cast<char>(std::stoi(in.substr(k + 2, 2), nullptr, 16));
      k += 3;
    } else {
      out += in[k + 1];
      ++k;
    }
  }
  return out;
}

// One sd_notify datagram, as libsystemd's sd_notify sends it (from our own
// pid, with our credentials), with fd (if not -1) as SCM_RIGHTS.
void sd_notify_send(const std::string& text, int pass_fd = -1) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) {
    std::fprintf(stderr, "otpd_test_child: no usable NOTIFY_SOCKET\n");
    return;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::size_t len = std::strlen(path);
  if (fd < 0 || len >= sizeof sa.sun_path) {
    return;
  }
  std::memcpy(sa.sun_path, path, len);
  if (path[0] == '@') {
    sa.sun_path[0] = '\0';
  }
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr m{};
  m.msg_name = &sa;
  m.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  if (pass_fd >= 0) {
    m.msg_control = ctrl;
    m.msg_controllen = sizeof ctrl;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  if (sendmsg(fd, &m, MSG_NOSIGNAL) < 0) {
    std::fprintf(stderr, "otpd_test_child: sendmsg %s: %s\n", path, std::strerror(errno));
  }
  close(fd);
}

// sd_notify_barrier: BARRIER=1 with the write end of a pipe, then a wait
// (at most 5 s) until the manager has closed it, i.e. has read everything
// sent before. A sender that exits at once is otherwise gone (and not
// found in any cgroup or process group) by the time its datagram is read.
void sd_notify_barrier() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return;
  }
  sd_notify_send("BARRIER=1", p[1]);
  close(p[1]);
  pollfd pf{p[0], POLLIN, 0};
  while (poll(&pf, 1, 5000) < 0 && errno == EINTR) {
  }
  close(p[0]);
}

const char* term_file = nullptr;
char* volatile kept = nullptr;  // what alloc made stays referenced (not optimised out)

void on_term(int) {
  int fd = open(term_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ssize_t n = write(fd, "term\n", 5);
    (void)n;
    close(fd);
  }
  _exit(0);
}

[[noreturn]] void sleep_forever() {
  for (;;) {
    pause();
  }
}

void no_core() {
  rlimit rl{0, 0};
  setrlimit(RLIMIT_CORE, &rl);
}

}  // namespace

int main(int argc, char** argv) {
  long long start = now_ns();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto arg = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "otpd_test_child: %s needs an argument\n", a.c_str());
        std::exit(100);
      }
      return argv[++i];
    };
    if (a == "stamp") {
      std::string path = arg();
      int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        write_all(fd, std::to_string(getpid()) + " " + std::to_string(start) + "\n");
        close(fd);
      }
    } else if (a == "pidfile") {
      write_pidfile(arg(), getpid());
    } else if (a == "ready") {
      (void)otpd::core::notify_ready();
    } else if (a == "wait") {
      long ms = std::atol(arg().c_str());
      timespec ts{ms / 1000, (ms % 1000) * 1000000};
      while (nanosleep(&ts, &ts) != 0) {
      }
    } else if (a == "ignore-term") {
      signal(SIGTERM, SIG_IGN);
    } else if (a == "on-term") {
      static std::string path;
      path = arg();
      term_file = path.c_str();
      signal(SIGTERM, on_term);
    } else if (a == "grandchild" || a == "grandchild-setsid") {
      std::string path = arg();
      pid_t pid = fork();
      if (pid == 0) {
        if (a == "grandchild-setsid") {
          setsid();
        }
        sleep_forever();
      }
      write_pidfile(path, pid);
    } else if (a == "print") {
      write_all(1, arg() + "\n");
    } else if (a == "write") {
      write_all(1, decode(arg()));
    } else if (a == "notify") {
      sd_notify_send(decode(arg()));
    } else if (a == "notify-child" || a == "notify-setsid-child") {
      std::string text = decode(arg());
      pid_t pid = fork();
      if (pid == 0) {
        if (a == "notify-setsid-child") {
          setsid();
        }
        sd_notify_send(text);
        sd_notify_barrier();
        _exit(0);
      }
      int status = 0;
      while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    } else if (a == "pings") {
      long ms = std::atol(arg().c_str());
      long n = std::atol(arg().c_str());
      for (long k = 0; k < n; ++k) {
        sd_notify_send("WATCHDOG=1");
        timespec ts{ms / 1000, (ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0) {
        }
      }
    } else if (a == "eprint") {
      write_all(2, arg() + "\n");
    } else if (a == "spam") {
      long n = std::atol(arg().c_str());
      std::string line(99, 'x');
      line += '\n';
      for (long k = 0; k < n; ++k) {
        write_all(1, line);
      }
    } else if (a == "exit") {
      std::exit(std::atoi(arg().c_str()));
    } else if (a == "crash") {
      no_core();
      // The default action: a sanitizer build's SIGSEGV handler would
      // report and exit 1 instead of dying of the signal.
      signal(SIGSEGV, SIG_DFL);
      raise(SIGSEGV);
    } else if (a == "abort") {
      no_core();
      std::abort();
    } else if (a == "alloc") {
      std::size_t bytes = static_cast<std::size_t>(std::atol(arg().c_str())) << 20;
      auto* p = static_cast<char*>(std::malloc(bytes));
      for (std::size_t off = 0; p != nullptr && off < bytes; off += 4096) {
        p[off] = 1;
      }
      kept = p;
    } else if (a == "forks") {
      long n = std::atol(arg().c_str());
      std::string path = arg();
      long made = 0;
      int err = 0;
      for (long k = 0; k < n; ++k) {
        pid_t pid = fork();
        if (pid == 0) {
          sleep_forever();
        }
        if (pid < 0) {
          err = errno;
          break;
        }
        ++made;
      }
      std::string line = "forked " + std::to_string(made) + " errno " + std::to_string(err) + "\n";
      std::string tmp = path + ".tmp";
      int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) {
        write_all(fd, line);
        close(fd);
        rename(tmp.c_str(), path.c_str());
      }
    } else if (a == "spin") {
      long long until = now_ns() + std::atol(arg().c_str()) * 1000000LL;
      static volatile unsigned long sink;
      while (now_ns() < until) {
        sink = sink + 1;
      }
    } else if (a == "sleep") {
      sleep_forever();
    } else {
      std::fprintf(stderr, "otpd_test_child: unknown action %s\n", a.c_str());
      return 100;
    }
  }
  return 0;
}

// bench_mailbox: what a mailbox costs, beside the floors it stands on.
//
//   build/bin/bench_mailbox [--quick] [--section S]... [--transport socket|ring]
//                           [--rounds N]
//
// Prints one table: call round trip p50/p99 (GenServer call: monitor, send,
// selective receive of the reply, demonitor) next to a bare ping-pong on
// Unix sockets of each type, blocking and with a 50 µs poll before blocking;
// one-way throughput of 64 B and 1 KiB messages (send() per message, and
// batched with post()) next to a raw STREAM writer batching 64 frames per
// write; the cost of spawn + monitor + exit of a task next to a bare fork+exec.
// The otpd rows run on each mailbox transport: [socket] (the Unix socket
// alone) and [ring] (the shared-memory ring beside it).
// When `erl` is installed, Erlang's local send and ping-pong run in the same go.
// `--section paired` (only when asked) runs the batched floors and otpd's
// batched rows in turn, N rounds (--rounds, 7 by default; each round starts
// one row further on), and prints each one's median with its range and each
// ratio to the socket floor of the same round: on a machine whose speed
// moves between runs, the ratio within a round is the figure to compare.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <set>
#include <string>
#include <vector>

#include <otpd/bench/support.hpp>
#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/core/spawn.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/task.hpp>

namespace rt = otpd::runtime;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

bool g_quick = false;
std::set<std::string> g_sections;  // empty: all
int g_rounds = 7;                  // --section paired
// The mailbox transports the otpd rows run on (--transport narrows it).
std::vector<rt::transport> g_transports = {rt::transport::socket, rt::transport::ring};
bool want(const char* section) {
  return g_sections.empty() || g_sections.count(section) > 0;
}

struct stats {
  double p50_us = 0;
  double p99_us = 0;
};

stats summarize(const std::vector<double>& us) {
  auto p = otpd::bench::summarize(us);
  return {p.p50, p.p99};
}

void row(const char* what, const std::string& a, const std::string& b, const char* note = "") {
  std::printf("| %-58s | %14s | %14s | %s\n", what, a.c_str(), b.c_str(), note);
}
std::string fmt_us(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f µs", v);
  return b;
}
std::string fmt_rate(double per_s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f M/s", per_s / 1e6);
  return b;
}

// --- raw socket ping-pong floor ----------------------------------------------
// The echo side reads one message and writes it back; with spin_us > 0 both
// sides poll without blocking for that long before they block.
// spin_us < 0: block in epoll_wait on an epoll set holding fd, then read,
// as a mailbox must that waits on several sources at once (its sockets,
// pidfds, timers).
ssize_t recv_spin(int fd, char* buf, std::size_t len, int spin_us) {
  if (spin_us < 0) {
    thread_local int ep = -1;
    thread_local int ep_fd = -1;
    if (ep_fd != fd) {
      if (ep >= 0) {
        ::close(ep);
      }
      ep = ::epoll_create1(EPOLL_CLOEXEC);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      ep_fd = fd;
    }
    epoll_event got{};
    if (::epoll_wait(ep, &got, 1, -1) < 0) {
      return -1;
    }
    return ::recv(fd, buf, len, MSG_DONTWAIT);
  }
  if (spin_us > 0) {
    auto end = clk::now() + std::chrono::microseconds(spin_us);
    do {
      ssize_t n = ::recv(fd, buf, len, MSG_DONTWAIT);
      if (n >= 0 || errno != EAGAIN) {
        return n;
      }
    } while (clk::now() < end);
  }
  return ::recv(fd, buf, len, 0);
}

bool recv_exact(int fd, char* buf, std::size_t len, int type, int spin_us) {
  std::size_t got = 0;
  while (got < len) {
    ssize_t n = recv_spin(fd, buf + got, len - got, spin_us);
    if (n <= 0) {
      return false;
    }
    got += static_cast<std::size_t>(n);
    if (type != SOCK_STREAM) {
      return true;
    }
  }
  return true;
}

stats raw_pingpong(int type, int spin_us, int iters) {
  int sv[2];
  ::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv);
  pid_t pid = ::fork();
  char buf[64] = {};
  if (pid == 0) {
    ::close(sv[0]);
    while (recv_exact(sv[1], buf, sizeof buf, type, spin_us)) {
      if (::send(sv[1], buf, sizeof buf, 0) != sizeof buf) {
        break;
      }
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(iters));
  for (int i = 0; i < iters + 1000; ++i) {
    auto t0 = clk::now();
    ::send(sv[0], buf, sizeof buf, 0);
    recv_exact(sv[0], buf, sizeof buf, type, spin_us);
    if (i >= 1000) {  // warm-up excluded
      us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
  }
  // A DGRAM peer sees no EOF when we close: stop it outright.
  ::close(sv[0]);
  (void)otpd::core::kill_and_reap(pid, SIGKILL, otpd::core::deadline::never());
  return summarize(us);
}

// --- otpd call round trip -------------------------------------------------------
class echo final : public rt::gen_server {
 public:
  std::optional<std::string> handle_call(const rt::message& req, const rt::from&) override {
    return req.body;
  }
};

stats call_roundtrip(int spin_us, int iters) {
  rt::set_max_spin(std::chrono::microseconds(spin_us));
  auto pid = rt::start_server([spin_us] {
    rt::set_max_spin(std::chrono::microseconds(spin_us));
    return std::make_unique<echo>();
  });
  if (!pid) {
    std::fprintf(stderr, "bench_mailbox: unable to start the echo server: %s\n",
                 pid.error().message().c_str());
    std::exit(111);
  }
  std::string body = rt::pack(std::string(62, 'x'));  // 64 bytes of msgpack
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(iters));
  for (int i = 0; i < iters + 1000; ++i) {
    auto t0 = clk::now();
    auto r = rt::call_message(*pid, body, 5s);
    if (!r) {
      std::fprintf(stderr, "bench_mailbox: call failed: %s\n", r.error().message().c_str());
      std::exit(111);
    }
    if (i >= 1000) {
      us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
  }
  (void)rt::stop_server(*pid);
  rt::set_max_spin(50us);
  return summarize(us);
}

// --- one-way throughput --------------------------------------------------------
// CPU time per message of each side of a one-way run: on a loaded machine a
// steadier figure than the rate, which then depends on the scheduler.
struct cpu_cost {
  double receiver_ns = 0;
  double sender_ns = 0;
};
double thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}
// The CPU time of our reaped children so far.
double children_cpu_ns() {
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  auto ns = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) * 1e9 + static_cast<double>(tv.tv_usec) * 1e3;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

double oneway(std::size_t body_bytes, long count, bool batched, cpu_cost* cost = nullptr) {
  std::string payload(body_bytes - (body_bytes >= 256 ? 3 : 2), 'x');
  std::string body = rt::pack(payload);  // exactly body_bytes of msgpack
  pid_t me = rt::self();
  const double cpu0 = thread_cpu_ns();
  const bool report_cpu = cost != nullptr;
  auto t0 = clk::now();
  auto child = rt::spawn([me, body, count, batched, report_cpu] {
    for (long i = 0; i < count; ++i) {
      auto r = batched ? rt::post_message(me, rt::kind::user, {}, body)
                       : rt::send_message(me, rt::kind::user, {}, body);
      if (!r) {
        return 1;
      }
    }
    if (!rt::flush()) {
      return 2;
    }
    // Then the sender's CPU time, in one more message (the runtime reaps
    // it, so the receiver's RUSAGE_CHILDREN would learn it too late).
    if (report_cpu) {
      timespec ts{};
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return rt::send(me, static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec))
                 ? 0
                 : 3;
    }
    return 0;
  });
  if (!child) {
    std::exit(111);
  }
  // One deadline for the whole run: a clock read per message would be the
  // bench's cost, not the mailbox's (the raw floors read no clock).
  const auto until = rt::deadline::after(60s);
  for (long i = 0; i < count; ++i) {
    auto m = rt::receive(until);
    if (!m) {
      std::fprintf(stderr, "bench_mailbox: lost messages after %ld\n", i);
      std::exit(111);
    }
  }
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  if (cost != nullptr) {
    cost->receiver_ns = (thread_cpu_ns() - cpu0) / static_cast<double>(count);
    auto r = rt::receive(until);
    auto ns = r ? r->as<double>() : otpd::core::Result<double>(otpd::core::errc::malformed);
    if (!ns) {
      std::exit(111);
    }
    cost->sender_ns = *ns / static_cast<double>(count);
  }
  return static_cast<double>(count) / secs;
}

// A bare STREAM writer: 64 frames of (4-byte length + body) per write, the
// reader parses lengths. The floor for batching on this socket type.
double raw_stream_batched(std::size_t body_bytes, long count, cpu_cost* cost = nullptr) {
  int sv[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  std::string frame(4 + body_bytes, 'x');
  auto len = static_cast<std::uint32_t>(body_bytes);
  std::memcpy(frame.data(), &len, 4);
  std::string batch;
  for (int i = 0; i < 64; ++i) {
    batch += frame;
  }
  const double cpu0 = thread_cpu_ns();
  const double children0 = children_cpu_ns();
  auto t0 = clk::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(sv[0]);
    for (long sent = 0; sent < count; sent += 64) {
      std::size_t off = 0;
      while (off < batch.size()) {
        ssize_t n = ::write(sv[1], batch.data() + off, batch.size() - off);
        if (n <= 0) {
          ::_exit(1);
        }
        off += static_cast<std::size_t>(n);
      }
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  std::vector<char> buf(256 * 1024);
  std::size_t have = 0;
  long got = 0;
  while (got < count) {
    ssize_t n = ::read(sv[0], buf.data() + have, buf.size() - have);
    if (n <= 0) {
      break;
    }
    have += static_cast<std::size_t>(n);
    std::size_t off = 0;
    while (have - off >= 4) {
      std::uint32_t l;
      std::memcpy(&l, buf.data() + off, 4);
      if (have - off < 4 + l) {
        break;
      }
      off += 4 + l;
      ++got;
    }
    std::memmove(buf.data(), buf.data() + off, have - off);
    have -= off;
  }
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  const double cpu1 = thread_cpu_ns();
  ::close(sv[0]);
  ::waitpid(pid, nullptr, 0);
  if (cost != nullptr && got > 0) {
    cost->receiver_ns = (cpu1 - cpu0) / static_cast<double>(got);
    cost->sender_ns = (children_cpu_ns() - children0) / static_cast<double>(got);
  }
  return static_cast<double>(got) / secs;
}

// A bare shared-memory ring between two processes: the floor for otpd's
// ring on this machine. The same shape as otpd's (512 KiB, a 32-byte header
// before each body, the tail published every 16 KiB, the head every 64 KiB
// taken), the receiver copies each frame out as otpd's does, and both sides
// only spin: no validation, no queue, no wake-ups. The other two ways of
// taking a frame leave it where it lies, as a mailbox that handed out bodies
// inside the ring would (otpd does not: a sender could rewrite a body after
// it was checked, and a body kept by the program would pin the sender's
// ring): touch_one reads one byte of the body, an upper bound no program
// that uses its messages reaches; read_all reads every byte of it (a sum of
// 8-byte words, as a decoder reads a body once), the bound for one that
// does. Every way reads the bytes the sender wrote on the other core.
enum class ring_take { copy_out, touch_one, read_all };
volatile std::uint64_t g_ring_sink = 0;
double raw_shm_ring(std::size_t body_bytes, long count, cpu_cost* cost = nullptr,
                    ring_take take = ring_take::copy_out) {
  constexpr std::size_t cap = std::size_t{512} * 1024;
  constexpr std::size_t header = 32;
  struct control {
    alignas(64) std::atomic<std::uint64_t> tail;
    alignas(64) std::atomic<std::uint64_t> head;
  };
  void* mem =
      ::mmap(nullptr, 4096 + cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::exit(111);
  }
  auto* ctl = new (mem) control{};
  char* data = static_cast<char*>(mem) + 4096;
  const std::size_t rec = header + body_bytes;
  std::string msg(rec, 'x');
  const double cpu0 = thread_cpu_ns();
  const double children0 = children_cpu_ns();
  auto t0 = clk::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    std::uint64_t tail = 0;
    std::uint64_t published = 0;
    std::uint64_t head = 0;
    for (long i = 0; i < count; ++i) {
      std::size_t off = tail & (cap - 1);
      std::size_t skip = off + rec > cap ? cap - off : 0;  // no double mapping: wrap by skipping
      while (cap - (tail + skip - head) < rec) {
        if (published != tail) {
          ctl->tail.store(tail, std::memory_order_release);
          published = tail;
        }
        head = ctl->head.load(std::memory_order_acquire);
      }
      tail += skip;
      std::memcpy(data + (tail & (cap - 1)), msg.data(), rec);
      tail += rec;
      if (tail - published >= 16 * 1024) {
        ctl->tail.store(tail, std::memory_order_release);
        published = tail;
      }
    }
    ctl->tail.store(tail, std::memory_order_release);
    ::_exit(0);
  }
  std::vector<char> out(rec);
  std::uint64_t head = 0;
  std::uint64_t released = 0;
  long got = 0;
  unsigned seen = 0;
  while (got < count) {
    std::uint64_t tail = ctl->tail.load(std::memory_order_acquire);
    while (head != tail && got < count) {
      std::size_t off = head & (cap - 1);
      if (off + rec > cap) {
        head += cap - off;
        continue;
      }
      switch (take) {
        case ring_take::copy_out:
          std::memcpy(out.data(), data + off, rec);
          // The copy is never read: tell the compiler it is, so that it
          // cannot drop it as a dead store.
          asm volatile("" : : "r"(out.data()) : "memory");
          break;
        case ring_take::touch_one:
          seen += static_cast<unsigned char>(
              reinterpret_cast<volatile const char*>(data)[off + header + body_bytes - 1]);
          break;
        case ring_take::read_all: {
          std::uint64_t sum = 0;
          const char* body = data + off + header;
          for (std::size_t i = 0; i + 8 <= body_bytes; i += 8) {
            std::uint64_t w;
            std::memcpy(&w, body + i, 8);
            sum += w;
          }
          g_ring_sink = sum;  // a volatile store: the sum must be computed
          break;
        }
      }
      head += rec;
      ++got;
    }
    if (head - released >= 64 * 1024 || head == tail) {
      ctl->head.store(head, std::memory_order_release);
      released = head;
    }
  }
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  const double cpu1 = thread_cpu_ns();
  ::waitpid(pid, nullptr, 0);
  ::munmap(mem, 4096 + cap);
  if (take == ring_take::touch_one && seen == 0) {
    std::exit(111);  // every frame was read ('x' bytes): keeps the reads
  }
  if (cost != nullptr) {
    cost->receiver_ns = (cpu1 - cpu0) / static_cast<double>(got);
    cost->sender_ns = (children_cpu_ns() - children0) / static_cast<double>(got);
  }
  return static_cast<double>(got) / secs;
}

// One message per send(2) on a bare socketpair of the given type: what a
// mailbox on that type could reach without batching. DGRAM queues only
// max_dgram_qlen (10) datagrams, so its sender blocks constantly.
double raw_per_syscall(int type, std::size_t body_bytes, long count) {
  int sv[2];
  ::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv);
  std::string msg(body_bytes, 'x');
  auto t0 = clk::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(sv[0]);
    for (long i = 0; i < count; ++i) {
      if (::send(sv[1], msg.data(), msg.size(), 0) < 0) {
        ::_exit(1);
      }
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  std::vector<char> buf(type == SOCK_STREAM ? 256 * 1024 : body_bytes);
  long got = 0;
  std::size_t bytes = 0;
  while (got < count) {
    ssize_t n = ::recv(sv[0], buf.data(), buf.size(), 0);
    if (n <= 0) {
      break;
    }
    if (type == SOCK_STREAM) {
      bytes += static_cast<std::size_t>(n);
      got = static_cast<long>(bytes / body_bytes);
    } else {
      ++got;
    }
  }
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  ::close(sv[0]);
  ::waitpid(pid, nullptr, 0);
  return static_cast<double>(got) / secs;
}

// --- spawn costs -----------------------------------------------------------------
stats bare_fork_exec(const std::string& prog, int iters) {
  std::vector<double> us;
  for (int i = 0; i < iters; ++i) {
    auto t0 = clk::now();
    pid_t pid = ::fork();
    if (pid == 0) {
      char* argv[] = {const_cast<char*>(prog.c_str()), const_cast<char*>("exit"),
                      const_cast<char*>("0"), nullptr};
      ::execv(prog.c_str(), argv);
      ::_exit(127);
    }
    ::waitpid(pid, nullptr, 0);
    us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
  }
  return summarize(us);
}

stats task_spawn_monitor_exit(int iters) {
  std::vector<double> us;
  for (int i = 0; i < iters; ++i) {
    auto t0 = clk::now();
    auto t = rt::async([] { return 0; });
    auto v = t.await(5s);
    if (!v) {
      std::exit(111);
    }
    us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
  }
  return summarize(us);
}

stats process_spawn_monitor_down(int iters) {
  std::vector<double> us;
  for (int i = 0; i < iters; ++i) {
    auto t0 = clk::now();
    auto p = rt::spawn([] { return 0; }, {.monitor = true});
    if (!p || !rt::receive_ref(p->monitor_ref, rt::deadline::after(5s))) {
      std::exit(111);
    }
    us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
  }
  return summarize(us);
}

void erlang_anchor() {
  if (std::system("command -v erl >/dev/null 2>&1") != 0) {
    row("Erlang local send / ping-pong", "not installed", "", "(apt-get install erlang-base)");
    return;
  }
  // Compiled into a temporary dir: code run by -eval is interpreted, far
  // slower than what Erlang users run.
  char dir[] = "/tmp/otpd-erl.XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    return;
  }
  std::string cmd = std::string("cd ") + dir +
                    " && erlc " OTPD_MAILBOX_ERL
                    " && erl +S 2 -noshell -pa . -run mailbox_bench run 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  double mps = 0;
  double rtt = 0;
  if (p != nullptr && std::fscanf(p, "%lf %lf", &mps, &rtt) == 2) {
    row("Erlang local send, 5 M messages (anchor)", fmt_rate(mps * 1e6), "", "");
    row("Erlang ping-pong round trip, mean (anchor)", fmt_us(rtt), "", "");
  } else {
    row("Erlang anchor", "failed to run", "", "");
  }
  if (p != nullptr) {
    ::pclose(p);
  }
  std::system((std::string("rm -rf ") + dir).c_str());
}

// The batched floors and otpd's batched rows in turn, g_rounds times; the
// medians and each row's ratio to the socket floor of the same round.
void paired_section(long msgs) {
  struct contender {
    std::string what;
    std::string short_name;
    std::function<double(std::size_t, long)> run;
  };
  std::vector<contender> rows = {
      {"raw STREAM, 64 length-prefixed frames per write (floor)", "socket floor",
       [](std::size_t n, long c) { return raw_stream_batched(n, c); }},
      {"raw shared-memory ring, copied in and out (ring floor)", "ring floor",
       [](std::size_t n, long c) { return raw_shm_ring(n, c); }},
      {"raw shared-memory ring, every byte read in place", "ring read in place",
       [](std::size_t n, long c) { return raw_shm_ring(n, c, nullptr, ring_take::read_all); }},
  };
  for (auto t : g_transports) {
    rows.push_back({std::string("otpd post() + flush(): batched [") + rt::to_string(t) + "]",
                    std::string("otpd [") + rt::to_string(t) + "]", [t](std::size_t n, long c) {
                      rt::set_transport(t);
                      return oneway(n, c, true);
                    }});
  }
  const std::size_t sizes[] = {64, 1024};
  // rate[size][row][round]
  std::vector<std::vector<std::vector<double>>> rate(
      2, std::vector<std::vector<double>>(rows.size(), std::vector<double>(g_rounds)));
  // Each round starts one row further on and flips the order of the sizes,
  // so that a drift of the machine's speed within a round does not favour
  // the same row every time.
  for (int r = 0; r < g_rounds; ++r) {
    for (std::size_t k = 0; k < 2; ++k) {
      const std::size_t s = (k + static_cast<std::size_t>(r)) % 2;
      for (std::size_t j = 0; j < rows.size(); ++j) {
        const std::size_t i = (j + static_cast<std::size_t>(r)) % rows.size();
        rate[s][i][r] = rows[i].run(sizes[s], s == 0 ? msgs : msgs / 4);
      }
    }
  }
  rt::set_transport(rt::transport::ring);
  auto median_range = [](std::vector<double> v, const char* unit, double scale) {
    std::sort(v.begin(), v.end());
    double mid = v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    char b[64];
    std::snprintf(b, sizeof b, "%.2f%s (%.2f-%.2f)", mid / scale, unit, v.front() / scale,
                  v.back() / scale);
    return std::string(b);
  };
  std::printf("\n## Batched one-way, paired: %d rounds, each row in turn (%ld / %ld messages)\n\n",
              g_rounds, msgs, msgs / 4);
  std::printf("| %-58s | %26s | %26s |\n", "what: median (min-max)", "64 B", "1 KiB");
  std::printf("|%s|%s|%s|\n", std::string(60, '-').c_str(), std::string(28, '-').c_str(),
              std::string(28, '-').c_str());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::printf("| %-58s | %26s | %26s |\n", rows[i].what.c_str(),
                median_range(rate[0][i], " M/s", 1e6).c_str(),
                median_range(rate[1][i], " M/s", 1e6).c_str());
  }
  for (std::size_t i = 1; i < rows.size(); ++i) {
    std::vector<double> q[2];
    for (std::size_t s = 0; s < 2; ++s) {
      for (int r = 0; r < g_rounds; ++r) {
        q[s].push_back(rate[s][i][r] / rate[s][0][r]);
      }
    }
    std::string what = "  " + rows[i].short_name + " / socket floor, same round";
    std::printf("| %-58s | %26s | %26s |\n", what.c_str(), median_range(q[0], "x", 1).c_str(),
                median_range(q[1], "x", 1).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      g_quick = true;
    } else if (std::strcmp(argv[i], "--section") == 0 && i + 1 < argc) {
      g_sections.insert(argv[++i]);
    } else if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc &&
               std::atoi(argv[i + 1]) > 0) {
      g_rounds = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--transport") == 0 && i + 1 < argc &&
               (std::strcmp(argv[i + 1], "socket") == 0 || std::strcmp(argv[i + 1], "ring") == 0)) {
      g_transports = {std::strcmp(argv[++i], "socket") == 0 ? rt::transport::socket
                                                            : rt::transport::ring};
    } else {
      std::fprintf(stderr,
                   "usage: bench_mailbox [--quick] "
                   "[--section rtt|oneway|batched|paired|spawn|erlang]... "
                   "[--transport socket|ring] [--rounds N]\n");
      return 100;
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  otpd::core::set_log_level(otpd::core::log_level::error);
  char dir[] = "/tmp/otpd-bench.XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    return 111;
  }
  if (auto r = rt::init({.runtime_dir = dir}); !r) {
    std::fprintf(stderr, "bench_mailbox: unable to open a mailbox: %s\n",
                 r.error().message().c_str());
    return 111;
  }
  int iters = g_quick ? 2000 : 20000;
  long msgs = g_quick ? 200000 : 2000000;
  const std::string self_dir = otpd::bench::program_dir();

  if (want("rtt")) {
    std::printf("\n## Round trip, 64 B (%d round trips after 1000 warm-up)\n\n", iters);
    std::printf("| %-58s | %14s | %14s |\n", "what", "p50", "p99");
    std::printf("|%s|%s|%s|\n", std::string(60, '-').c_str(), std::string(16, '-').c_str(),
                std::string(16, '-').c_str());
    for (auto [type, name] :
         {std::pair{SOCK_STREAM, "STREAM"}, std::pair{SOCK_SEQPACKET, "SEQPACKET"},
          std::pair{SOCK_DGRAM, "DGRAM"}}) {
      auto s = raw_pingpong(type, 0, iters);
      row((std::string("raw ") + name + " socketpair ping-pong, blocking (floor)").c_str(),
          fmt_us(s.p50_us), fmt_us(s.p99_us));
    }
    {
      auto s = raw_pingpong(SOCK_STREAM, -1, iters);
      row("raw STREAM ping-pong, epoll_wait then read (floor)", fmt_us(s.p50_us), fmt_us(s.p99_us));
    }
    for (auto [type, name] :
         {std::pair{SOCK_STREAM, "STREAM"}, std::pair{SOCK_SEQPACKET, "SEQPACKET"}}) {
      auto s = raw_pingpong(type, 50, iters);
      row((std::string("raw ") + name + " ping-pong, 50 µs poll before blocking (floor)").c_str(),
          fmt_us(s.p50_us), fmt_us(s.p99_us));
    }
    for (auto t : g_transports) {
      rt::set_transport(t);
      std::string on = std::string(" [") + rt::to_string(t) + "]";
      auto c0 = call_roundtrip(0, iters);
      row(("otpd GenServer call, no spin (blocking receive)" + on).c_str(), fmt_us(c0.p50_us),
          fmt_us(c0.p99_us));
      auto c50 = call_roundtrip(50, iters);
      row(("otpd GenServer call, adaptive spin up to 50 µs" + on).c_str(), fmt_us(c50.p50_us),
          fmt_us(c50.p99_us));
    }
    rt::set_transport(rt::transport::ring);
  }
  if (want("oneway")) {
    std::printf(
        "\n## One-way throughput (%ld messages, sender and receiver in separate processes)\n\n",
        msgs);
    std::printf("| %-58s | %14s | %14s |\n", "what", "64 B", "1 KiB");
    std::printf("|%s|%s|%s|\n", std::string(60, '-').c_str(), std::string(16, '-').c_str(),
                std::string(16, '-').c_str());
    row("raw STREAM, 64 length-prefixed frames per write (floor)",
        fmt_rate(raw_stream_batched(64, msgs)), fmt_rate(raw_stream_batched(1024, msgs / 4)));
    row("raw shared-memory ring, spinning (ring floor)", fmt_rate(raw_shm_ring(64, msgs)),
        fmt_rate(raw_shm_ring(1024, msgs / 4)));
    for (auto [type, name] :
         {std::pair{SOCK_STREAM, "STREAM"}, std::pair{SOCK_SEQPACKET, "SEQPACKET"},
          std::pair{SOCK_DGRAM, "DGRAM"}}) {
      row((std::string("raw ") + name + ", one message per send(2)").c_str(),
          fmt_rate(raw_per_syscall(type, 64, msgs / 8)),
          fmt_rate(raw_per_syscall(type, 1024, msgs / 8)));
    }
    for (auto t : g_transports) {
      rt::set_transport(t);
      std::string on = std::string(" [") + rt::to_string(t) + "]";
      row(("otpd send(): one message per call" + on).c_str(), fmt_rate(oneway(64, msgs / 8, false)),
          fmt_rate(oneway(1024, msgs / 8, false)));
      row(("otpd post() + flush(): batched" + on).c_str(), fmt_rate(oneway(64, msgs, true)),
          fmt_rate(oneway(1024, msgs / 4, true)));
    }
    rt::set_transport(rt::transport::ring);
  }
  if (g_sections.count("batched") > 0) {  // only when asked: "oneway" has these rows
    // The batched rows of "oneway" alone, beside their floor: what the
    // socket path is tuned against (quicker to repeat, or to profile).
    std::printf("\n## Batched one-way (%ld messages)\n\n", msgs);
    std::printf("| %-58s | %14s | %14s |\n", "what", "64 B", "1 KiB");
    std::printf("|%s|%s|%s|\n", std::string(60, '-').c_str(), std::string(16, '-').c_str(),
                std::string(16, '-').c_str());
    // Then the CPU time per message of each side (receiver / sender).
    auto cost = [](const cpu_cost& c) {
      char b[48];
      std::snprintf(b, sizeof b, "%.0f / %.0f ns", c.receiver_ns, c.sender_ns);
      return std::string(b);
    };
    // One row of rates (64 B, 1 KiB), then its CPU row.
    auto measured = [&](const std::string& what, auto&& run) {
      cpu_cost c64;
      cpu_cost c1k;
      std::string a = fmt_rate(run(64, msgs, &c64));
      std::string b = fmt_rate(run(1024, msgs / 4, &c1k));
      row(what.c_str(), a, b);
      row("  CPU per message, receiver / sender", cost(c64), cost(c1k));
    };
    measured(
        "raw STREAM, 64 length-prefixed frames per write (floor)",
        [](std::size_t n, long count, cpu_cost* c) { return raw_stream_batched(n, count, c); });
    measured("raw shared-memory ring, spinning (ring floor)",
             [](std::size_t n, long count, cpu_cost* c) { return raw_shm_ring(n, count, c); });
    measured("  the same, one byte of each body read in place",
             [](std::size_t n, long count, cpu_cost* c) {
               return raw_shm_ring(n, count, c, ring_take::touch_one);
             });
    measured("  the same, every byte of each body read in place",
             [](std::size_t n, long count, cpu_cost* c) {
               return raw_shm_ring(n, count, c, ring_take::read_all);
             });
    for (auto t : g_transports) {
      rt::set_transport(t);
      measured(std::string("otpd post() + flush(): batched [") + rt::to_string(t) + "]",
               [](std::size_t n, long count, cpu_cost* c) { return oneway(n, count, true, c); });
    }
    rt::set_transport(rt::transport::ring);
  }
  if (g_sections.count("paired") > 0) {  // only when asked
    paired_section(msgs);
  }
  if (want("spawn")) {
    std::printf("\n## Processes (%d each)\n\n", iters / 10);
    std::printf("| %-58s | %14s | %14s |\n", "what", "p50", "p99");
    std::printf("|%s|%s|%s|\n", std::string(60, '-').c_str(), std::string(16, '-').c_str(),
                std::string(16, '-').c_str());
    auto fe = bare_fork_exec(self_dir + "/otpd_test_child", iters / 10);
    row("bare fork + execve + waitpid of otpd_test_child (floor)", fmt_us(fe.p50_us),
        fmt_us(fe.p99_us));
    auto sp = process_spawn_monitor_down(iters / 10);
    row("otpd spawn(fn) with monitor -> exit -> DOWN received", fmt_us(sp.p50_us),
        fmt_us(sp.p99_us));
    auto tk = task_spawn_monitor_exit(iters / 10);
    row("otpd async(fn) -> result -> await (spawn+monitor+exit)", fmt_us(tk.p50_us),
        fmt_us(tk.p99_us));
  }
  if (want("erlang")) {
    std::printf("\n## Anchor\n\n");
    erlang_anchor();
  }
  rt::shutdown();
  std::string rm = std::string("rm -rf ") + dir;
  return std::system(rm.c_str()) == 0 ? 0 : 1;
}

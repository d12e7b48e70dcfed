#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ring.hpp"

#include <otpd/core/clock.hpp>
#include <otpd/core/exit_reason.hpp>
#include <otpd/core/result.hpp>
#include <otpd/core/runtime_dir.hpp>
#include <otpd/core/unique_fd.hpp>
#include <otpd/protocol/layout.hpp>
#include <otpd/runtime/message.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::runtime::detail {

// --- for task.cpp and gen_server.cpp ------------------------------------------
// What they need from the process context, beyond the public API.

// Stops watching a child and hands its pidfd to the caller (who reaps it).
core::unique_fd forget_child(pid_t pid);
// A call that gave up: its late reply is dropped on arrival.
void abandon(const ref& r);
// Watches (and will reap) a child started outside spawn().
core::Result<void> adopt(pid_t pid, core::unique_fd pidfd);
// Delivers the signals of this signalfd as kind::system messages.
core::Result<void> set_signal_fd(int fd);
// Takes in whatever the sockets hold, without waiting.
void drain();

// --- the process context, shared by the units of process.cpp -----------------
// process.cpp lists which unit defines which part of it.

using core::errc;
using core::errno_code;
using core::exit_kind;
using core::exit_reason;
using core::unique_fd;

// epoll user data: the kind of fd in the top byte, the fd below.
enum class tag : std::uint64_t { listen = 1, conn = 2, pidfd = 3, signal = 4, timer = 5 };
inline std::uint64_t make_tag(tag t, int fd) {
  return (static_cast<std::uint64_t>(t) << 56) | static_cast<std::uint32_t>(fd);
}

// The address of the Unix socket at path; nullopt when the path is too long.
inline std::optional<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    return std::nullopt;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}
// A listening mailbox socket bound at path (replacing a stale socket file of
// a dead process that had the same pid).
core::Result<core::unique_fd> listen_at(const std::string& path);
// The exit reason the node's otpd recorded for pid (a process that is not our
// child); exit_kind::unknown when no daemon runs or it does not know.
core::exit_reason ask_otpd_exit_reason(const std::string& runtime_dir, pid_t pid);

// Set in a fork()ed child (pthread_atfork): its context is a stale copy.
inline std::atomic<bool> g_forked{false};

// Blocks a connection let go of while bodies still viewed them: counted,
// so that bodies kept by the program cannot pin receive buffers without
// bound (message.cpp).
[[nodiscard]] std::size_t orphaned_bytes() noexcept;
// Releases b, counting it as orphaned if bodies still view it.
void orphan(shared_block* b) noexcept;
// Over this, received bodies are copied instead of viewed.
inline constexpr std::size_t max_orphaned = std::size_t{64} << 20;

// Owns one reference to a shared_block (or none).
class block_ref {
 public:
  block_ref() noexcept = default;
  explicit block_ref(std::size_t capacity) : b_(shared_block::make(capacity)) {}
  block_ref(const block_ref&) = delete;
  block_ref& operator=(const block_ref&) = delete;
  block_ref(block_ref&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  block_ref& operator=(block_ref&& o) noexcept {
    if (this != &o) {
      reset();
      b_ = std::exchange(o.b_, nullptr);
    }
    return *this;
  }
  ~block_ref() { reset(); }
  void reset() noexcept {
    if (b_ != nullptr) {
      orphan(std::exchange(b_, nullptr));
    }
  }
  shared_block* get() const noexcept { return b_; }
  explicit operator bool() const noexcept { return b_ != nullptr; }
  char* data() const noexcept { return b_->data(); }
  std::size_t capacity() const noexcept { return b_ == nullptr ? 0 : b_->capacity; }
  // No body views it: its bytes may be overwritten.
  bool sole() const noexcept { return b_->refs.load(std::memory_order_acquire) == 1; }

 private:
  shared_block* b_ = nullptr;
};

// A body for the queue from bytes in block (which it may keep alive): inline
// when small, else a view of the block, or a copy of its own once too many
// orphaned blocks are alive.
inline bytes body_in(shared_block* block, std::string_view raw) {
  if (raw.size() <= bytes::inline_capacity || orphaned_bytes() > max_orphaned) {
    return bytes(raw);
  }
  return bytes::view(block, raw.data(), raw.size());
}

// Where ring bodies are copied to (ring bytes are shared with the sender and
// cannot be viewed): a block filled front to back, replaced when full.
struct arena {
  block_ref block;
  std::size_t used = 0;

  bytes copy(std::string_view raw) {
    if (raw.size() <= bytes::inline_capacity) {
      return bytes(raw);
    }
    if (block.capacity() - used < raw.size()) {
      if (block && block.sole() && block.capacity() >= raw.size()) {
        used = 0;
      } else {
        block = block_ref(std::max(arena_size, raw.size()));
        used = 0;
      }
    }
    char* p = block.data() + used;
    std::memcpy(p, raw.data(), raw.size());
    used += raw.size();
    return body_in(block.get(), {p, raw.size()});
  }
  static constexpr std::size_t arena_size = std::size_t{256} * 1024;
};

// The received messages, in order: a ring of slots that only grows, so
// queueing and taking allocate nothing once it has its size.
class message_queue {
 public:
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  message& operator[](std::size_t i) noexcept { return slots_[(head_ + i) & mask_]; }
  void push_back(message&& m) {
    if (count_ == slots_.size()) {
      grow();
    }
    slots_[(head_ + count_) & mask_] = std::move(m);
    ++count_;
  }
  // Removes and returns element i, closing the gap from the nearer end.
  message take(std::size_t i) noexcept {
    message m = std::move((*this)[i]);
    if (i < count_ / 2) {
      for (std::size_t j = i; j > 0; --j) {
        (*this)[j] = std::move((*this)[j - 1]);
      }
      head_ = (head_ + 1) & mask_;
    } else {
      for (std::size_t j = i; j + 1 < count_; ++j) {
        (*this)[j] = std::move((*this)[j + 1]);
      }
    }
    --count_;
    return m;
  }
  // Removes every element pred holds for, keeping the others' order.
  template <class Pred>
  void remove_if(Pred pred) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      if (pred((*this)[i])) {
        (*this)[i] = message{};
        continue;
      }
      if (kept != i) {
        (*this)[kept] = std::move((*this)[i]);
      }
      ++kept;
    }
    count_ = kept;
  }
  void clear() noexcept {
    slots_.clear();
    head_ = 0;
    count_ = 0;
    mask_ = 0;
  }

 private:
  void grow() {
    std::size_t n = slots_.empty() ? 64 : slots_.size() * 2;
    std::vector<message> bigger(n);
    for (std::size_t i = 0; i < count_; ++i) {
      bigger[i] = std::move((*this)[i]);
    }
    slots_.swap(bigger);
    head_ = 0;
    mask_ = n - 1;
  }

  std::vector<message> slots_;  // a power of two of them
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::size_t mask_ = 0;
};

// A connection from a sender to our mailbox.
struct in_conn {
  core::unique_fd fd;
  pid_t peer = 0;
  // Bytes [start, end) of rx are received and not yet parsed. Bodies of
  // received messages view rx (body_in): its bytes before end are never
  // overwritten while a body views them (read_conn takes a new block).
  block_ref rx;
  block_ref spare;  // the previous rx, reused once no body views it
  std::size_t start = 0;
  std::size_t end = 0;
  arena ring_bodies;  // copies of the bodies taken from the ring
  // The shared-memory ring of this connection (ring.hpp), once the sender
  // asked for one; on_ring once the sender said its messages go there.
  ring::mapping ring;
  std::uint64_t head = 0;       // ours; the control page's copy is only published
  std::uint64_t published = 0;  // head as last stored in the control page
  bool on_ring = false;
  bool socket_next = false;  // the ring said: the next message is on the socket
};

// Our connection to another process's mailbox.
struct out_conn {
  core::unique_fd fd;
  std::string pending;  // posted frames not yet written
  // The ring, once the receiver handed one over (ring.hpp).
  enum class ring_state : std::uint8_t { off, asked, on } state = ring_state::off;
  ring::mapping ring;
  std::uint64_t tail = 0;       // ours: bytes written
  std::uint64_t published = 0;  // tail as last stored in the control page
  std::uint64_t head_seen = 0;  // the receiver's head as last loaded
  std::size_t unwoken = 0;      // bytes posted since the last wake-up check
  bool dirty = false;           // listed in context::dirty_ (pending bytes or a wake-up due)
};

// A process we watch through its pidfd: our child, a link, monitors.
struct watch {
  core::unique_fd pidfd;
  bool child = false;
  bool linked = false;
  bool parent = false;  // our parent when we linked to it: its unknown end propagates
  std::vector<ref> monitors;
};

class context {
 public:
  context() = default;
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  context(context&&) = delete;
  context& operator=(context&&) = delete;
  ~context() = default;

  // --- lifecycle (process.cpp) -------------------------------------------------
  Result<void> init(const init_options& o);
  Result<void> ensure_init() {
    if (g_forked.load(std::memory_order_relaxed)) {
      drop_inherited();
    }
    if (listen_) {
      return {};
    }
    return init({});
  }
  // For senders that need no mailbox of their own (a task's child).
  Result<void> ensure_dir() {
    if (g_forked.load(std::memory_order_relaxed)) {
      drop_inherited();
    }
    if (!dir_.empty()) {
      return {};
    }
    return set_dir(core::default_runtime_dir());
  }
  void drop_inherited();
  void shutdown();
  void become_child(core::unique_fd listen, const std::string& tmp_path);
  [[noreturn]] void exit_self(const core::exit_reason& reason);

  pid_t self() const { return self_; }
  const std::string& dir() const { return dir_; }
  std::string mbox_path(pid_t pid) const { return protocol::layout::mailbox_socket(dir_, pid); }

  // --- sending (mailbox.cpp) ---------------------------------------------------
  // A post into the ring of the connection the last send used, when it
  // needs nothing but the copy: no lookup, no wait, no publish or wake-up
  // due. False: nothing was done, take send().
  bool post_fast(pid_t pid, kind k, const ref& r, std::string_view body);
  Result<void> send(const address& to, kind k, const ref& r, std::string_view body, deadline until,
                    bool buffered);
  Result<void> flush_all(deadline until);
  void set_transport(transport t) { ring_enabled_ = t != transport::socket; }
  transport transport_to(pid_t pid) const {
    auto it = out_.find(pid);
    if (it == out_.end()) {
      return transport::none;
    }
    return it->second.state == out_conn::ring_state::on ? transport::ring : transport::socket;
  }
  // Bytes held by the receive blocks of this process's connections.
  std::size_t receive_buffer_bytes() const {
    std::size_t n = 0;
    for (const auto& [fd, c] : in_) {
      n += c.rx.capacity() + c.spare.capacity();
    }
    return n;
  }
  transport transport_from(pid_t pid) const {
    transport t = transport::none;
    for (const auto& [fd, c] : in_) {
      if (c.peer == pid) {
        if (c.on_ring) {
          return transport::ring;
        }
        t = transport::socket;
      }
    }
    return t;
  }

  // --- receiving (mailbox.cpp) -------------------------------------------------
  Result<message> receive(const predicate* pred, deadline until);
  std::size_t queued() {
    pump(0);
    return queue_.size();
  }
  // An outside event loop sleeps on this fd without telling the runtime, so
  // from now on every ring says its reader sleeps: senders always wake us
  // with a frame on the socket (a ring message alone would go unnoticed).
  int event_fd() {
    external_loop_ = true;
    for (in_conn* c : rings_) {
      c->ring.ctl()->reader_sleeps.store(1, std::memory_order_seq_cst);
    }
    return epoll_.get();
  }
  void dispatch_pending() { pump(0); }
  void drain_all() {
    for (int rounds = 0; rounds < 1000 && pump(0) > 0; ++rounds) {
    }
  }
  void set_max_spin(std::chrono::microseconds max) {
    max_spin_ = max;
    spin_ = max;
  }
  // Removes queued messages of kind k carrying r. Only what is queued:
  // callers have already stopped whatever could still produce such a message
  // (the monitor, the call), so nothing to pump.
  void remove_matching(const ref& r, kind k) {
    queue_.remove_if([&](const message& m) { return m.ref == r && m.kind == k; });
  }
  void abandon(const ref& r) {
    abandoned_.insert(r);
    remove_matching(r, kind::reply);
  }
  Result<void> set_signal_fd(int fd);

  // --- names (names.cpp) -------------------------------------------------------
  Result<void> register_name(const std::string& name);
  Result<void> unregister_name(const std::string& name);
  Result<pid_t> whereis(const std::string& name);

  // --- monitors, links, children (links.cpp) -----------------------------------
  ref monitor(pid_t pid);
  void demonitor(const ref& r, bool flush);
  Result<void> link(pid_t pid, bool notify_peer);
  void unlink(pid_t pid, bool notify_peer);
  void set_trap_exit(bool on) { trap_exit_ = on; }
  bool trap_exit() const { return trap_exit_; }
  Result<void> adopt_child(pid_t pid, core::unique_fd pidfd, bool linked);
  // Stops watching pid; the caller has reaped it or will.
  core::unique_fd forget(pid_t pid);

  // --- timers (timers.cpp) -----------------------------------------------------
  ref start_timer(std::chrono::milliseconds after, std::string_view body);
  bool cancel_timer(const ref& r);

 private:
  Result<void> set_dir(const std::string& dir);
  // Adds fd to our epoll set under tag t; false (errno set) on failure.
  bool watch_fd(tag t, int fd, std::uint32_t events = EPOLLIN) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = make_tag(t, fd);
    return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
  }
  void unwatch_fd(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }
  void enqueue(message m) { queue_.push_back(std::move(m)); }

  // mailbox.cpp
  Result<pid_t> resolve(const address& to);
  Result<out_conn*> connect_to(pid_t pid, deadline until);
  Result<void> write_out(pid_t pid, out_conn& c, deadline until);
  void drop_out(pid_t pid) {
    out_.erase(pid);
    last_out_ = nullptr;
  }
  void mark_dirty(pid_t pid, out_conn& c) {
    if (!c.dirty) {
      c.dirty = true;
      dirty_.push_back(pid);
    }
  }
  void check_offer(pid_t pid, out_conn& c);
  // Makes what was written into c's ring visible to the receiver.
  static void publish(out_conn& c) {
    if (c.tail != c.published) {
      c.ring.ctl()->tail.store(c.tail, std::memory_order_release);
      c.published = c.tail;
    }
  }
  Result<void> ring_put(pid_t pid, out_conn*& cp, const wire::header& h, std::string_view body,
                        deadline until, bool post);
  Result<void> send_ring(pid_t pid, out_conn*& c, const wire::header& h, std::string_view body,
                         deadline until, bool post);
  Result<void> wake_reader(pid_t pid, out_conn& c);
  int pump(int timeout_ms);
  int poll_rings();
  void accept_all();
  void read_conn(int fd, bool all = false);
  bool consume(in_conn& c);
  void deliver(in_conn& c, const wire::header& h, bytes body);
  void offer_ring(in_conn& c);
  void close_conn(int fd, const char* why);
  void read_signals(int fd);

  // links.cpp
  watch* watch_pid(pid_t pid);
  void release_if_idle(std::unordered_map<pid_t, watch>::iterator it);
  void handle_control(const message& m);
  void on_pid_exit(pid_t pid);

  // timers.cpp
  void fire_timers();
  void arm_timer();

  // The node and our mailbox.
  pid_t self_ = 0;
  std::string dir_;
  core::unique_fd listen_;
  core::unique_fd epoll_;

  // Mailbox I/O.
  std::unordered_map<int, in_conn> in_;
  std::unordered_map<pid_t, out_conn> out_;
  // The connection the last send found (post_fast); reset wherever out_
  // loses an entry (node pointers survive rehashing).
  pid_t last_pid_ = 0;
  out_conn* last_out_ = nullptr;
  std::vector<in_conn*> rings_;  // the connections reading a ring (stable: node-based map)
  std::vector<pid_t> dirty_;     // out_ entries with pending bytes or a wake-up due
  bool ring_enabled_ = true;
  // Ring bytes taken since the epoll set was last looked at (pump).
  std::uint64_t ring_since_epoll_ = 0;
  core::clock::time_point last_epoll_{};  // when pump() last looked at the epoll set
  std::unordered_map<std::string, pid_t> name_cache_;
  std::unordered_set<ref, ref_hash> abandoned_;
  message_queue queue_;
  std::chrono::microseconds max_spin_{50};
  bool external_loop_ = false;  // event_fd() was asked for (see there)
  std::chrono::microseconds spin_{50};

  // Names we registered.
  std::vector<std::string> names_;

  // Monitors, links, children.
  std::unordered_map<pid_t, watch> watches_;
  std::unordered_map<int, pid_t> pidfd_owner_;
  std::unordered_map<ref, pid_t, ref_hash> monitor_owner_;
  bool trap_exit_ = false;

  // Pending timers by due time; one timerfd armed for the earliest.
  struct timer {
    ref r;
    std::string body;
  };
  std::multimap<core::clock::time_point, timer> timers_;
  core::unique_fd timer_fd_;
};

// The one context of this process, created on first use.
inline context* g_ctx = nullptr;
context& make_context();
inline context& ctx() {
  if (g_ctx == nullptr) [[unlikely]] {
    return make_context();
  }
  return *g_ctx;
}

}  // namespace otpd::runtime::detail

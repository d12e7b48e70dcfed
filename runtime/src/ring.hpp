#pragma once

// The shared-memory ring of a mailbox connection between two local processes:
// one single-producer single-consumer byte ring per (sender, receiver) pair,
// beside the connection's Unix socket.
//
// Set-up. The sender asks for a ring with a header-only frame flagged
// flag_ring_request on the socket. The receiver creates a memfd (MFD_CLOEXEC,
// sealed against shrinking and growing: nothing in it can vanish under a
// mapping), maps it and hands it back with SCM_RIGHTS and the byte 'R' (or
// answers 'N': it keeps to the socket). No name in /dev/shm: only the two
// processes hold the memory. The sender then writes a frame flagged
// flag_ring_start on the socket; from there on the receiver takes the
// connection's messages from the ring.
//
// Layout. One control page, then `capacity` data bytes (a power of two),
// mapped twice back to back so that a frame that wraps round the end is
// still contiguous in memory. The data bytes are the socket's own stream of
// frames (wire.hpp). tail (bytes ever published) is written only by the
// sender, head (bytes ever consumed) only by the receiver; each keeps its own
// copy and never trusts the other's: the receiver accepts a published range
// only if tail - head <= capacity and it holds whole, valid frames; the
// sender accepts a head only if it lies in [its tail - capacity, its tail].
// Either check failing drops the connection with a logged reason.
//
// Publishing. The sender copies header and body into the ring, then stores
// tail with release order: a sender killed mid-write never publishes a torn
// frame. The receiver loads tail with acquire order.
//
// Order across the two paths. Bodies over max_body take the socket: the
// sender publishes a header-only frame flagged flag_on_socket in the ring,
// then writes the frame on the socket; the receiver, on reaching that marker,
// takes exactly one frame from the socket before it reads the ring again.
//
// Wake-ups. A receiver about to sleep sets reader_sleeps, fences, and checks
// tail once more; a sender, after publishing, fences and, only if
// reader_sleeps is set, clears it and writes a header-only frame flagged
// flag_wake on the socket (which the receiver's epoll sees). A spinning
// receiver has not set the flag and is never woken. A sender facing a full
// ring sets writer_waits the same way; the receiver, after consuming, clears
// it and writes the byte 'W' back on the socket, which the sender polls for
// together with the socket's hang-up (a dead receiver) and its deadline.
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "wire.hpp"

#include <otpd/core/result.hpp>
#include <otpd/core/unique_fd.hpp>

namespace otpd::runtime::ring {

// Header flags of the frames that run the ring (wire::header::flags).
inline constexpr std::uint8_t flag_ring_request = 1;  // socket: sender asks for a ring
inline constexpr std::uint8_t flag_ring_start = 2;    // socket: what follows is in the ring
inline constexpr std::uint8_t flag_wake = 4;          // socket: the ring has data
inline constexpr std::uint8_t flag_on_socket = 8;     // ring: the next message is on the socket

// Bytes the receiver sends back on the socket.
inline constexpr char offer_ring = 'R';     // with SCM_RIGHTS: the memfd
inline constexpr char offer_refused = 'N';  // the receiver keeps to the socket
inline constexpr char room_byte = 'W';      // the ring has room again

inline constexpr std::uint64_t ring_magic = 0x676e69726470746fULL;  // "otpdring"
inline constexpr std::size_t default_capacity = std::size_t{512} * 1024;
inline constexpr std::size_t min_capacity = std::size_t{64} * 1024;
inline constexpr std::size_t max_capacity = std::size_t{64} << 20;
// Bodies above this go on the socket (a ring slot that large would hold back
// many small messages, and the copy dominates anyway).
inline constexpr std::size_t max_body = std::size_t{64} * 1024;

// The control page. Each side's word on its own cache line.
struct control {
  alignas(64) std::atomic<std::uint64_t> tail;
  alignas(64) std::atomic<std::uint64_t> head;
  alignas(64) std::atomic<std::uint32_t> reader_sleeps;
  alignas(64) std::atomic<std::uint32_t> writer_waits;
  alignas(64) std::uint64_t magic;
  std::uint64_t capacity;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(sizeof(control) <= 4096);

// A ring mapped into this process: the control page and the data twice.
class mapping {
 public:
  mapping() = default;
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  mapping(mapping&& o) noexcept { swap(o); }
  mapping& operator=(mapping&& o) noexcept {
    mapping tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~mapping();

  // Receiver: a new ring of `capacity` bytes; fd_out gets the memfd to hand over.
  static core::Result<mapping> create(std::size_t capacity, core::unique_fd& fd_out);
  // Sender: maps a memfd received from a receiver, after checking that it is
  // sealed against shrinking and that its size and control page make sense.
  static core::Result<mapping> attach(int fd);

  [[nodiscard]] control* ctl() const { return ctl_; }
  [[nodiscard]] char* data() const { return data_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  explicit operator bool() const { return ctl_ != nullptr; }

 private:
  void swap(mapping& o) noexcept {
    std::swap(base_, o.base_);
    std::swap(length_, o.length_);
    std::swap(ctl_, o.ctl_);
    std::swap(data_, o.data_);
    std::swap(capacity_, o.capacity_);
  }
  void* base_ = nullptr;
  std::size_t length_ = 0;
  control* ctl_ = nullptr;
  char* data_ = nullptr;
  std::size_t capacity_ = 0;
};

// What the receiver finds next in a ring whose published range is
// [head, tail) (tail as just loaded from the control page). data holds
// 2 * capacity readable bytes (the double mapping). A pure function: the
// mailbox and the ring fuzzer both use it.
struct read {
  enum status { empty, frame, broken } status = empty;
  wire::cut f;                // for frame: header and body (a view into data)
  std::size_t size = 0;       // bytes the frame takes
  const char* why = nullptr;  // for broken
};
inline read next(const char* data, std::size_t capacity, std::uint64_t head,
                 std::uint64_t tail) noexcept {
  read r;
  if (tail == head) {
    return r;
  }
  std::uint64_t avail = tail - head;  // modular: a tail behind head is huge
  if (avail > capacity) {
    r.status = read::broken;
    r.why = "ring tail out of range";
    return r;
  }
  std::string_view buf(data + (head & (capacity - 1)), avail);
  r.f = wire::next_frame(buf);
  if (r.f.status == wire::cut::broken) {
    r.status = read::broken;
    r.why = r.f.why;
    return r;
  }
  if (r.f.status == wire::cut::need_more) {
    r.status = read::broken;
    r.why = "ring holds a torn frame";
    return r;
  }
  r.status = read::frame;
  r.size = sizeof(wire::header) + r.f.body.size();
  return r;
}

// The room a sender has, given its own tail and the head it loaded; false
// when head is impossible (ahead of tail, or more than capacity behind).
inline bool room(std::uint64_t tail, std::uint64_t head, std::size_t capacity,
                 std::size_t& out) noexcept {
  std::uint64_t used = tail - head;
  if (used > capacity) {
    return false;
  }
  out = capacity - used;
  return true;
}

}  // namespace otpd::runtime::ring

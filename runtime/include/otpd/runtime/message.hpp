#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>

#include <otpd/core/exit_reason.hpp>
#include <otpd/core/result.hpp>
#include <otpd/runtime/term.hpp>

namespace otpd::runtime {

// A reference unique across the processes of a machine: the creating pid and
// a per-process random salt in hi, a counter in lo (make_ref()).
struct ref {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  explicit operator bool() const { return hi != 0 || lo != 0; }
  friend bool operator==(const ref&, const ref&) = default;
};
[[nodiscard]] ref make_ref() noexcept;
[[nodiscard]] std::string to_string(const ref& r);

struct ref_hash {
  std::size_t operator()(const ref& r) const noexcept {
    return static_cast<std::size_t>(r.hi * 0x9e3779b97f4a7c15ULL ^ r.lo);
  }
};

// What an envelope carries. Stable numbers: they are on the wire.
enum class kind : std::uint8_t {
  user = 0,    // a plain send()
  call = 1,    // a GenServer call; ref identifies the reply
  reply = 2,   // the answer to a call (same ref)
  cast = 3,    // a GenServer cast
  down = 4,    // a monitored process ended; ref = the monitor; body = reason
  exit = 5,    // a linked process ended and we trap exits; body = reason
  link = 6,    // control: the sender linked itself to us
  unlink = 7,  // control: the sender removed its link
  result = 8,  // a task's result; ref = the task
  system = 9,  // control messages of behaviours (e.g. stop a server)
};
[[nodiscard]] const char* to_string(kind k) noexcept;

// A reference-counted block of immutable bytes that several bodies can view
// (a mailbox connection's receive buffer, or one large body of its own). The
// count is atomic: a message may be handed to another thread.
struct alignas(16) shared_block {
  std::atomic<std::size_t> refs{1};
  std::size_t capacity = 0;
  bool orphan = false;  // counted in the bytes its owner let go (message.cpp)

  char* data() noexcept { return reinterpret_cast<char*>(this + 1); }
  // A block with capacity bytes after the header, refs = 1. Throws bad_alloc.
  static shared_block* make(std::size_t capacity);
  static void retain(shared_block* b) noexcept { b->refs.fetch_add(1, std::memory_order_relaxed); }
  static void release(shared_block* b) noexcept {
    // The last holder need not pay for an atomic read-modify-write.
    if (b->refs.load(std::memory_order_acquire) == 1 ||
        b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      destroy(b);
    }
  }
  static void destroy(shared_block* b) noexcept;
};

// A message body: immutable bytes with the read interface of a string.
// Bodies up to inline_capacity bytes live inside the object (no heap);
// larger ones view a shared_block, so a received body is not copied out of
// the buffer it was read into, and copying a body shares it.
class bytes {
 public:
  static constexpr std::size_t inline_capacity = 88;

  bytes() noexcept = default;
  bytes(std::string_view s) { init(s); }    // NOLINT(google-explicit-constructor)
  bytes(const std::string& s) { init(s); }  // NOLINT(google-explicit-constructor)
  bytes(const char* s) { init(s); }         // NOLINT(google-explicit-constructor)
  bytes(const char* p, std::size_t n) { init({p, n}); }
  // A view of [p, p + n) inside b, which it keeps alive.
  static bytes view(shared_block* b, const char* p, std::size_t n) noexcept {
    bytes r;
    shared_block::retain(b);
    r.block_ = b;
    r.ptr_ = p;
    r.size_ = n;
    return r;
  }
  // Whole-union copies: a fixed size the compiler inlines, for either form.
  bytes(const bytes& o) noexcept : size_(o.size_), block_(o.block_) {
    std::memcpy(inline_, o.inline_, sizeof inline_);
    if (block_ != nullptr) {
      shared_block::retain(block_);
    }
  }
  bytes(bytes&& o) noexcept : size_(o.size_), block_(o.block_) {
    std::memcpy(inline_, o.inline_, sizeof inline_);
    o.block_ = nullptr;
    o.size_ = 0;
  }
  bytes& operator=(const bytes& o) noexcept {
    if (this != &o) {
      bytes t(o);
      swap(t);
    }
    return *this;
  }
  bytes& operator=(bytes&& o) noexcept {
    if (this != &o) {
      bytes t(std::move(o));
      swap(t);
    }
    return *this;
  }
  bytes& operator=(std::string_view s) {
    assign(s);
    return *this;
  }
  bytes& operator=(const std::string& s) { return *this = std::string_view(s); }
  bytes& operator=(const char* s) { return *this = std::string_view(s); }
  ~bytes() { reset(); }

  void swap(bytes& o) noexcept {
    bytes* a = this;
    bytes* b = &o;
    // Raw swap of the representation: both forms are trivially relocatable.
    alignas(bytes) unsigned char t[sizeof(bytes)];
    std::memcpy(t, static_cast<void*>(a), sizeof(bytes));
    std::memcpy(static_cast<void*>(a), static_cast<void*>(b), sizeof(bytes));
    std::memcpy(static_cast<void*>(b), t, sizeof(bytes));
  }
  void clear() noexcept { reset(); }

  [[nodiscard]] const char* data() const noexcept { return block_ != nullptr ? ptr_ : inline_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t length() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] const char* begin() const noexcept { return data(); }
  [[nodiscard]] const char* end() const noexcept { return data() + size_; }
  [[nodiscard]] char operator[](std::size_t i) const noexcept { return data()[i]; }
  [[nodiscard]] std::string_view view() const noexcept { return {data(), size_}; }
  [[nodiscard]] std::string str() const { return std::string(view()); }
  operator std::string_view() const noexcept { return view(); }  // NOLINT
  operator std::string() const { return str(); }                 // NOLINT
  // True when the bytes sit inside this object (no block is held).
  [[nodiscard]] bool is_inline() const noexcept { return block_ == nullptr; }

  friend bool operator==(const bytes& a, const bytes& b) noexcept { return a.view() == b.view(); }
  friend bool operator==(const bytes& a, std::string_view b) noexcept { return a.view() == b; }
  friend bool operator==(const bytes& a, const std::string& b) noexcept { return a.view() == b; }
  friend bool operator==(const bytes& a, const char* b) noexcept {
    return a.view() == std::string_view(b);
  }
  friend std::ostream& operator<<(std::ostream& os, const bytes& b);

 private:
  void reset() noexcept {
    if (block_ != nullptr) {
      shared_block::release(block_);
      block_ = nullptr;
    }
    size_ = 0;
  }
  // Fills an empty body (a constructor's): small bodies with one copy.
  void init(std::string_view s) {
    if (s.size() <= inline_capacity) {
      if (!s.empty()) {
        std::memcpy(inline_, s.data(), s.size());
      }
      size_ = s.size();
    } else {
      init_large(s);
    }
  }
  void init_large(std::string_view s);
  void assign(std::string_view s);

  std::size_t size_ = 0;
  shared_block* block_ = nullptr;  // nullptr: the bytes are in inline_
  union {
    char inline_[inline_capacity];
    const char* ptr_;  // into *block_
  };
};

// One received (or to-be-sent) message: the envelope and a msgpack body.
struct message {
  runtime::kind kind = kind::user;
  pid_t from = 0;
  runtime::ref ref;
  bytes body;  // msgpack bytes; may be empty

  template <class T>
  [[nodiscard]] core::Result<T> as() const noexcept {
    return unpack<T>(body);
  }
  // For down and exit messages: the exit reason they carry.
  [[nodiscard]] core::exit_reason reason() const;
};

// Encodes an exit reason as a message body ([kind, value]).
[[nodiscard]] std::string pack_reason(const core::exit_reason& r);

}  // namespace otpd::runtime

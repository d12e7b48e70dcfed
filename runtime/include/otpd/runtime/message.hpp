#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

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

// One received (or to-be-sent) message: the envelope and a msgpack body.
struct message {
  runtime::kind kind = kind::user;
  pid_t from = 0;
  runtime::ref ref;
  std::string body;  // msgpack bytes; may be empty

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

#pragma once
// The one way otpd owns libuv handles. libuv may still touch a handle after
// uv_close() until its close callback has run, so a handle's memory is freed
// only there, never in a destructor and never inside the handle's own
// callbacks. Two shapes, one rule:
//  - handle<H>: one handle on the heap, owned like a unique_ptr; reset() (or
//    the destructor) starts the close, the close callback frees it. The owner
//    may go at once: a closing handle calls nothing but its close callback.
//  - close_all(): for an object that embeds several handles and frees itself
//    (a session that must outlive hiredis' callbacks): closes them all and
//    runs done() after the last close callback, the one moment when nothing
//    of libuv's still points into the object.
#include <uv.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <utility>

namespace otpd::uv {

template <class H>
class handle {
 public:
  handle() noexcept = default;
  handle(handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  handle& operator=(handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  handle(const handle&) = delete;
  handle& operator=(const handle&) = delete;
  ~handle() { reset(); }

  // A fresh, zeroed handle; the caller runs uv_*_init on it.
  static handle make() {
    handle u;
    u.h_ = std::make_unique<H>().release();
    return u;
  }
  [[nodiscard]] H* get() const noexcept { return h_; }
  explicit operator bool() const noexcept { return h_ != nullptr; }

  // For a handle whose uv_*_init failed: libuv never saw it, so free it now.
  void discard() noexcept { std::unique_ptr<H> owned(std::exchange(h_, nullptr)); }

  void reset() noexcept {
    if (h_ == nullptr) {
      return;
    }
    auto* h = reinterpret_cast<uv_handle_t*>(std::exchange(h_, nullptr));
    if (uv_is_closing(h) == 0) {
      uv_close(h, [](uv_handle_t* x) { std::unique_ptr<H> owned(reinterpret_cast<H*>(x)); });
    }
  }

 private:
  H* h_ = nullptr;
};

// A handle of any type as the uv_handle_t libuv's generic calls take.
template <class H>
[[nodiscard]] uv_handle_t* as_handle(H* h) noexcept {
  return reinterpret_cast<uv_handle_t*>(h);
}

// Closes every handle in `handles` (initialised, not closing yet) and calls
// done() once, from the last close callback. Each handle's `data` is taken
// over for the count: after uv_close libuv calls nothing else on it.
void close_all(std::initializer_list<uv_handle_t*> handles, std::function<void()> done);

}  // namespace otpd::uv

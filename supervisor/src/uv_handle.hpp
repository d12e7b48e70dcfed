#pragma once

#include <uv.h>

#include <memory>
#include <utility>

namespace otpd::supervisor {

// Owns one libuv handle. Its memory is freed only in the close callback,
// after libuv is done with it; reset() starts the close.
template <class H>
class uv_handle {
 public:
  uv_handle() noexcept = default;
  uv_handle(uv_handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  uv_handle& operator=(uv_handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  uv_handle(const uv_handle&) = delete;
  uv_handle& operator=(const uv_handle&) = delete;
  ~uv_handle() { reset(); }

  // A fresh, zeroed handle; the caller runs uv_*_init on it.
  static uv_handle make() {
    uv_handle u;
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

}  // namespace otpd::supervisor

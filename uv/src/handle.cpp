#include <cassert>
#include <cstddef>
#include <memory>

#include <otpd/uv/handle.hpp>

namespace otpd::uv {

namespace {

struct pending_close {
  std::size_t left;
  std::function<void()> done;
};

void on_closed(uv_handle_t* h) {
  auto* p = static_cast<pending_close*>(h->data);
  if (--p->left == 0) {
    std::unique_ptr<pending_close> owned(p);
    // done() may free the object the handles were embedded in: nothing of
    // libuv's points into it any more.
    auto done = std::move(owned->done);
    owned.reset();
    if (done) {
      done();
    }
  }
}

}  // namespace

void close_all(std::initializer_list<uv_handle_t*> handles, std::function<void()> done) {
  assert(handles.size() > 0);
  auto owned = std::make_unique<pending_close>(pending_close{handles.size(), std::move(done)});
  pending_close* p = owned.release();  // freed by the last close callback
  for (uv_handle_t* h : handles) {
    assert(uv_is_closing(h) == 0);
    h->data = p;
    uv_close(h, on_closed);
  }
}

}  // namespace otpd::uv

#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

#include <gtest/gtest.h>

#include <otpd/testing/testing.hpp>

namespace otpd::testing {

// A private libuv loop per test. run_until() turns the loop until a
// predicate holds, bounded by a (scaled) deadline on a uv_timer of its own,
// so a test waits on events, never on a sleep. TearDown asserts that every
// handle was closed: uv_loop_close() == 0.
class uv_loop_test : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }

  void TearDown() override {
    // Let close callbacks run; bounded so that a leaked active handle fails
    // the test instead of hanging it.
    auto end = std::chrono::steady_clock::now() + scaled(std::chrono::milliseconds(5000));
    while (uv_loop_alive(&loop_) != 0 && std::chrono::steady_clock::now() < end) {
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_run(&loop_, UV_RUN_NOWAIT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a uv handle was left open";
  }

  uv_loop_t* loop() { return &loop_; }

  // Runs the loop until pred() is true; false if the scaled timeout passed.
  // A prepare handle checks pred before the loop blocks in poll, and a check
  // handle after it, so an event handled in any phase ends the wait at once
  // (UV_RUN_ONCE alone would block in poll after the timers phase).
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    if (pred()) {
      return true;
    }
    struct waiter {
      const std::function<bool()>* pred;
      uv_timer_t guard;
      uv_prepare_t before_poll;
      uv_check_t after_poll;
      int open = 3;
    };
    auto* w = new waiter{&pred, {}, {}, {}};  // freed by the last close callback
    uv_timer_init(&loop_, &w->guard);
    uv_prepare_init(&loop_, &w->before_poll);
    uv_check_init(&loop_, &w->after_poll);
    w->guard.data = w->before_poll.data = w->after_poll.data = w;
    uv_timer_start(
        &w->guard, [](uv_timer_t* t) { uv_stop(t->loop); },
        static_cast<std::uint64_t>(scaled(timeout).count()), 0);
    uv_prepare_start(&w->before_poll, [](uv_prepare_t* p) {
      if ((*static_cast<waiter*>(p->data)->pred)()) {
        uv_stop(p->loop);
      }
    });
    uv_check_start(&w->after_poll, [](uv_check_t* c) {
      if ((*static_cast<waiter*>(c->data)->pred)()) {
        uv_stop(c->loop);
      }
    });
    own_active_ = 3;
    uv_run(&loop_, UV_RUN_DEFAULT);
    own_active_ = 0;
    bool ok = pred();
    w->pred = nullptr;
    auto closed = [](uv_handle_t* h) {
      auto* self = static_cast<waiter*>(h->data);
      if (--self->open == 0) {
        delete self;
      }
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&w->guard), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&w->before_poll), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&w->after_poll), closed);
    return ok;
  }

  // Handles that are active and not closing (they keep the loop running),
  // not counting run_until's own.
  int active_handles() {
    int n = 0;
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void* arg) {
          if (uv_is_active(h) != 0 && uv_is_closing(h) == 0) {
            ++*static_cast<int*>(arg);
          }
        },
        &n);
    return n - own_active_;
  }

  // Turns the loop a few times without blocking (lets deferred work run).
  void spin(int times = 3) {
    for (int i = 0; i < times; ++i) {
      uv_run(&loop_, UV_RUN_NOWAIT);
    }
  }

 private:
  uv_loop_t loop_{};
  int own_active_ = 0;
};

}  // namespace otpd::testing

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
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    if (pred()) {
      return true;
    }
    bool expired = false;
    auto* guard = new uv_timer_t;  // freed in its close callback
    uv_timer_init(&loop_, guard);
    guard->data = &expired;
    uv_timer_start(
        guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; },
        static_cast<std::uint64_t>(scaled(timeout).count()), 0);
    while (!pred() && !expired) {
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(guard),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    return pred();
  }

  // Handles that are active and not closing (they keep the loop running).
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
    return n;
  }

  // Turns the loop a few times without blocking (lets deferred work run).
  void spin(int times = 3) {
    for (int i = 0; i < times; ++i) {
      uv_run(&loop_, UV_RUN_NOWAIT);
    }
  }

 private:
  uv_loop_t loop_{};
};

}  // namespace otpd::testing

// otpd::uv: handle memory is freed only by libuv's close callbacks, and
// close_all's done() runs once, after the last of them.
#include <uv.h>

#include <gtest/gtest.h>

#include <otpd/uv/handle.hpp>

namespace otpd::uv {
namespace {

TEST(UvHandle, ClosesOnResetAndTheLoopEndsClean) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  int fired = 0;
  {
    auto t = handle<uv_timer_t>::make();
    ASSERT_EQ(uv_timer_init(&loop, t.get()), 0);
    t.get()->data = &fired;
    uv_timer_start(
        t.get(), [](uv_timer_t* x) { ++*static_cast<int*>(x->data); }, 0, 0);
    ASSERT_EQ(uv_run(&loop, UV_RUN_NOWAIT), 0);
    EXPECT_EQ(fired, 1);
    uv_timer_start(
        t.get(), [](uv_timer_t* x) { ++*static_cast<int*>(x->data); }, 0, 0);
    handle<uv_timer_t> moved = std::move(t);
    EXPECT_FALSE(t);
    EXPECT_TRUE(moved);
  }  // closed here: the timer must not fire again
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(uv_loop_close(&loop), 0);  // every handle closed (ASan: and freed)
}

TEST(UvHandle, CloseAllRunsDoneOnceAfterTheLastCloseCallback) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  struct owner {
    uv_timer_t a{};
    uv_prepare_t b{};
    uv_idle_t c{};
  };
  auto* o = new owner;  // NOLINT(cppcoreguidelines-owning-memory): freed by done()
  uv_timer_init(&loop, &o->a);
  uv_prepare_init(&loop, &o->b);
  uv_idle_init(&loop, &o->c);
  int done = 0;
  close_all({as_handle(&o->a), as_handle(&o->b), as_handle(&o->c)}, [&] {
    ++done;
    delete o;  // NOLINT(cppcoreguidelines-owning-memory): libuv is done with every handle
  });
  EXPECT_EQ(done, 0);  // closes complete on the loop, not inside uv_close
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace otpd::uv

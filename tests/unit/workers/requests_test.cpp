// The workers' request decoders on hostile bodies: every malformed body is an
// error value, never a crash or an out-of-bounds read.
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/runtime/term.hpp>
#include <otpd/workers/cache_request.hpp>
#include <otpd/workers/stack_request.hpp>

namespace w = otpd::workers;
namespace rt = otpd::runtime;
using otpd::core::errc;

namespace {

std::string nil() {
  return rt::pack(msgpack::type::nil_t());
}

// Bodies no worker accepts: wrong shapes, types, arities, and bytes that are
// not msgpack at all or declare far more than they hold.
std::vector<std::string> hostile_bodies() {
  std::string deep(100'000, '\x91');
  return {
      "",
      "\xc1",                                      // never-used msgpack byte
      "\x91",                                      // truncated array
      std::string("\xdd\x80\x00\x00\x00", 5),      // array of 2^31, no elements
      std::string("\xdf\x80\x00\x00\x00\xc0", 6),  // map of 2^31
      "\xdb\xff\xff\xff\xff"
      "abc",                         // str of 4 GiB, 3 bytes
      deep + '\xc0',                 // nested 100000 deep
      rt::pack(std::vector<int>{}),  // empty array
      rt::pack(std::string("get")),  // a string
      nil(),                         // nil
      rt::pack(42),                  // an integer
      rt::pack(std::map<std::string, int>{{"get", 1}}),
      rt::pack(std::make_tuple(1, 2)),      // op not a string
      rt::pack(std::make_tuple(nil(), 2)),  // op a bin-ish string of nil
      rt::pack(std::make_tuple(std::string("nope"), 1)),
      rt::pack(std::make_tuple(std::string("get"))),                          // arity
      rt::pack(std::make_tuple(std::string("get"), 1, 2)),                    // arity
      rt::pack(std::make_tuple(std::string("put"), 1)),                       // arity
      rt::pack(std::make_tuple(std::string("put"), 1, 2, 3, 4)),              // arity
      rt::pack(std::make_tuple(std::string("put"), 1, 2, std::string("x"))),  // ttl type
      rt::pack(std::make_tuple(std::string("push"))),                         // arity
      rt::pack(std::make_tuple(std::string("push"), 1, 2)),                   // arity
      rt::pack(std::make_tuple(std::string("pop"), 1)),                       // arity
      rt::pack(1) + rt::pack(2),                                              // trailing bytes
  };
}

}  // namespace

TEST(CacheRequest, WellFormedRequestsDecode) {
  auto get = w::decode_cache_call(rt::pack(std::make_tuple(std::string("get"), std::string("k"))));
  ASSERT_TRUE(get);
  EXPECT_EQ(get->op, w::cache_op::get);
  EXPECT_EQ(get->key, rt::pack(std::string("k")));
  auto del = w::decode_cache_call(rt::pack(std::make_tuple(std::string("delete"), 7)));
  ASSERT_TRUE(del);
  EXPECT_EQ(del->op, w::cache_op::erase);
  auto size = w::decode_cache_call(rt::pack(std::make_tuple(std::string("size"))));
  ASSERT_TRUE(size);
  EXPECT_EQ(size->op, w::cache_op::size);

  auto put = w::decode_cache_cast(
      rt::pack(std::make_tuple(std::string("put"), std::string("k"), std::vector<int>{1, 2})));
  ASSERT_TRUE(put);
  EXPECT_EQ(put->key, rt::pack(std::string("k")));
  EXPECT_EQ(put->value, rt::pack(std::vector<int>{1, 2}));
  EXPECT_FALSE(put->ttl);
}

TEST(CacheRequest, TtlIsOptionalPositiveAndClamped) {
  auto with = [](auto ttl) {
    return w::decode_cache_cast(rt::pack(std::make_tuple(std::string("put"), 1, 2, ttl)));
  };
  EXPECT_EQ(with(300).value().ttl, std::chrono::milliseconds(300));
  EXPECT_FALSE(with(0).value().ttl);
  EXPECT_FALSE(with(-5).value().ttl);
  // A ttl that would overflow now() + ttl is clamped, not trusted.
  EXPECT_EQ(with(UINT64_MAX).value().ttl, w::max_ttl);
  EXPECT_EQ(with(INT64_MAX).value().ttl, w::max_ttl);
}

TEST(CacheRequest, HostileBodiesAreErrors) {
  for (const auto& body : hostile_bodies()) {
    EXPECT_EQ(w::decode_cache_call(body).error(), errc::malformed) << testing::PrintToString(body);
    EXPECT_EQ(w::decode_cache_cast(body).error(), errc::malformed) << testing::PrintToString(body);
  }
}

TEST(StackRequest, WellFormedRequestsDecode) {
  EXPECT_EQ(w::decode_stack_call(rt::pack(std::make_tuple(std::string("pop")))).value(),
            w::stack_op::pop);
  EXPECT_EQ(w::decode_stack_call(rt::pack(std::string("size"))).value(), w::stack_op::size);
  auto push = w::decode_stack_cast(rt::pack(std::make_tuple(std::string("push"), 5)));
  ASSERT_TRUE(push);
  EXPECT_EQ(*push, rt::pack(5));
}

TEST(StackRequest, HostileBodiesAreErrors) {
  for (const auto& body : hostile_bodies()) {
    EXPECT_EQ(w::decode_stack_call(body).error(), errc::malformed) << testing::PrintToString(body);
    EXPECT_EQ(w::decode_stack_cast(body).error(), errc::malformed) << testing::PrintToString(body);
  }
}

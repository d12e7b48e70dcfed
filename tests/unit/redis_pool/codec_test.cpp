#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/redis_pool/codec.hpp>
#include <otpd/runtime/term.hpp>

namespace otpd::redis_pool {
namespace {

using core::errc;
using redis_client::reply;

reply round_trip(const reply& r) {
  auto back = decode_reply(encode_reply(r));
  EXPECT_TRUE(back.has_value()) << back.error().message();
  return back ? *back : reply::error("decode failed");
}

TEST(Codec, EveryReplyTypeRoundTrips) {
  std::string bin("a\0b\r\nc", 6);
  std::vector<reply> cases = {
      reply::status("OK"),
      reply::error("WRONGTYPE Operation against a key holding the wrong kind of value"),
      reply::of_integer(0),
      reply::of_integer(-42),
      reply::of_integer(INT64_MAX),
      reply::of_integer(INT64_MIN),
      reply::bulk(bin),
      reply::bulk(""),
      reply::nil(),
      reply::array({}),
      reply::array({reply::of_integer(1), reply::array({reply::bulk(bin), reply::nil()}),
                    reply::status("QUEUED"), reply::error("ERR x")}),
  };
  for (const auto& r : cases) {
    EXPECT_EQ(round_trip(r), r) << r.to_string();
  }
}

TEST(Codec, FailuresCarryTheirErrc) {
  for (auto e : {errc::disconnected, errc::timeout, errc::busy, errc::shutting_down}) {
    auto r = decode_reply(encode_failure(e));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), e);
  }
  // A system error travels as disconnected: only otpd codes are on the wire.
  auto r = decode_reply(encode_failure(std::make_error_code(std::errc::connection_refused)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::disconnected);
  EXPECT_EQ(decode_reply(encode_result(reply::nil())).value(), reply::nil());
}

TEST(Codec, RequestsAreBinarySafe) {
  std::vector<std::string> argv = {"SET", std::string("k\0\r\n", 4), std::string(100000, 'v')};
  auto back = decode_request(encode_request(argv));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, argv);
  // Plain msgpack strings are accepted too (any client can build them).
  auto s = decode_request(runtime::pack(std::vector<std::string>{"PING"}));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->at(0), "PING");
}

TEST(Codec, MalformedBodiesAreErrors) {
  EXPECT_EQ(decode_request("").error(), errc::malformed);
  EXPECT_EQ(decode_request(runtime::pack(std::vector<std::string>{})).error(), errc::malformed);
  EXPECT_EQ(decode_request(runtime::pack(42)).error(), errc::malformed);
  EXPECT_EQ(decode_reply(runtime::pack(std::vector<int>{99, 1})).error(), errc::malformed);
  EXPECT_EQ(decode_reply("\xc1").error(), errc::malformed);
  // Nesting deeper than max_depth is refused, not recursed into.
  reply deep = reply::nil();
  for (int i = 0; i < max_depth + 2; ++i) {
    deep = reply::array({deep});
  }
  EXPECT_EQ(decode_reply(encode_reply(deep)).error(), errc::malformed);
}

TEST(Codec, HostileBodiesAreErrorsWithoutHugeAllocations) {
  // Declared counts far beyond the bytes: refused before anything is reserved.
  std::string huge_array("\xdd\x80\x00\x00\x00", 5);
  std::string huge_map("\xdf\x80\x00\x00\x00", 5);
  for (const auto& body : {huge_array, huge_map, std::string("\xdb\xff\xff\xff\xff", 5),
                           std::string(100'000, '\x91') + '\xc0'}) {
    EXPECT_EQ(decode_request(body).error(), errc::malformed);
    EXPECT_EQ(decode_reply(body).error(), errc::malformed);
  }
  // A reply array whose elements declare more than the body holds.
  std::string body = "\x92\x05" + huge_array;
  EXPECT_EQ(decode_reply(body).error(), errc::malformed);
  // Wrong shapes: nil, a map, a string, arguments that are not strings.
  EXPECT_EQ(decode_request(runtime::pack(msgpack::type::nil_t())).error(), errc::malformed);
  EXPECT_EQ(decode_request(runtime::pack(std::map<std::string, int>{{"GET", 1}})).error(),
            errc::malformed);
  EXPECT_EQ(decode_request(runtime::pack(std::string("GET"))).error(), errc::malformed);
  EXPECT_EQ(decode_request(runtime::pack(std::make_tuple(std::string("GET"), 1))).error(),
            errc::malformed);
  EXPECT_EQ(decode_reply(runtime::pack(std::vector<int>{})).error(), errc::malformed);
  EXPECT_EQ(decode_reply(runtime::pack(std::make_tuple(3, 1))).error(), errc::malformed);
  EXPECT_EQ(decode_reply(runtime::pack(std::make_tuple(6, 999))).error(), errc::malformed);
}

}  // namespace
}  // namespace otpd::redis_pool

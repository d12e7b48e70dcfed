// Bounded decoding of untrusted bodies: runtime::check_term / decode_term and
// everything built on them (unpack, is_valid_term, the mailbox's check).
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/runtime/term.hpp>

namespace rt = otpd::runtime;
using otpd::core::errc;

namespace {

// A msgpack array32/map32 header declaring n elements, followed by tail.
std::string declared(unsigned char tag, std::uint32_t n, std::string tail = {}) {
  std::string s(1, static_cast<char>(tag));
  for (int shift = 24; shift >= 0; shift -= 8) {
    s.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  return s + tail;
}

std::string nested(int depth) {
  std::string s(static_cast<std::size_t>(depth), '\x91');  // fixarray of 1
  return s + '\xc0';
}

template <class F>
std::chrono::milliseconds timed(F f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0);
}

}  // namespace

TEST(DecodeLimits, HugeDeclaredArrayIsRefusedFastWithoutAllocating) {
  // 2^31 elements declared in a 5-byte frame: msgpack-cxx alone would try to
  // reserve 2^31 objects (48 GiB) before finding the bytes missing.
  for (std::uint32_t n : {std::uint32_t{1} << 31, std::uint32_t{1} << 24, 1000u}) {
    auto body = declared(0xdd, n, std::string(16, '\xc0'));
    auto took = timed([&] {
      EXPECT_EQ(rt::decode_term(body).error(), errc::malformed) << n;
      EXPECT_FALSE(rt::check_term(body)) << n;
      EXPECT_FALSE(rt::is_valid_term(body)) << n;
      EXPECT_FALSE(rt::unpack<std::vector<int>>(body)) << n;
    });
    EXPECT_LT(took, std::chrono::milliseconds(500)) << n;
  }
}

TEST(DecodeLimits, HugeDeclaredMapIsRefused) {
  auto body = declared(0xdf, std::uint32_t{1} << 31, std::string(16, '\xc0'));
  EXPECT_EQ(rt::decode_term(body).error(), errc::malformed);
  // Nested: each container is small, but together they declare more than the bytes.
  std::string inner = declared(0xdd, 100);
  std::string body2 = "\x94" + inner + inner + inner + inner;
  EXPECT_EQ(rt::decode_term(body2).error(), errc::malformed);
}

TEST(DecodeLimits, HugeDeclaredStringIsRefused) {
  std::string body =
      "\xdb\xff\xff\xff\xff"
      "abc";  // str32 of 4 GiB, 3 bytes given
  EXPECT_EQ(rt::decode_term(body).error(), errc::malformed);
  body[0] = '\xc6';  // bin32
  EXPECT_EQ(rt::decode_term(body).error(), errc::malformed);
}

TEST(DecodeLimits, DeepNestingIsRefusedButOrdinaryNestingPasses) {
  EXPECT_TRUE(rt::decode_term(nested(200)));
  EXPECT_EQ(rt::decode_term(nested(300)).error(), errc::malformed);
  EXPECT_EQ(rt::decode_term(nested(1'000'000)).error(), errc::malformed);
  EXPECT_FALSE(rt::is_valid_term(nested(300)));
}

TEST(DecodeLimits, LegalTermsStillDecode) {
  // A 64 MiB body (the frame limit, less the array header) and a full array.
  std::string big(rt::decode_limits().bin() - 16, 'x');
  auto back = rt::unpack<std::vector<std::string>>(rt::pack(std::vector<std::string>{big}));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->at(0).size(), big.size());
  std::vector<int> ints(100'000, 7);
  EXPECT_EQ(rt::unpack<std::vector<int>>(rt::pack(ints)).value_or(std::vector<int>{}), ints);
  EXPECT_TRUE(rt::is_valid_term(""));
  EXPECT_EQ(rt::decode_term("").error(), errc::malformed);
}

TEST(DecodeLimits, TrailingBytesAndTruncationAreRefused) {
  EXPECT_EQ(rt::decode_term(rt::pack(1) + "x").error(), errc::malformed);
  auto s = rt::pack(std::string("hello"));
  EXPECT_EQ(rt::decode_term(s.substr(0, s.size() - 1)).error(), errc::malformed);
}

// is_valid_term reads a body that is one scalar off its first bytes, without
// the parser: its answer must be the parser's, for whole, cut and overlong
// bodies of every scalar type.
TEST(DecodeLimits, QuickScalarCheckAgreesWithTheParser) {
  std::vector<std::string> bodies = {
      rt::pack(0),
      rt::pack(127),
      rt::pack(-1),
      rt::pack(-33),
      rt::pack(200),
      rt::pack(70000),
      rt::pack(-70000),
      rt::pack(1LL << 40),
      rt::pack(-(1LL << 40)),
      rt::pack(1.5f),
      rt::pack(2.5),
      rt::pack(true),
      rt::pack(false),
      rt::pack(msgpack::type::nil_t()),
      rt::pack(std::string()),
      rt::pack(std::string(31, 'x')),
      rt::pack(std::string(32, 'x')),
      rt::pack(std::string(300, 'x')),
      rt::pack(std::string(70000, 'x')),
      rt::pack(std::vector<char>(5, 'b')),
      rt::pack(std::vector<char>(300, 'b')),
      rt::pack(std::vector<char>(70000, 'b')),
  };
  std::size_t checked = 0;
  for (const auto& whole : bodies) {
    ASSERT_TRUE(rt::is_valid_term(whole)) << whole.size();
    // Every cut of it, and it with bytes after.
    for (std::size_t n = 1; n < whole.size(); n = n < 8 ? n + 1 : n * 2) {
      std::string cut = whole.substr(0, n);
      EXPECT_EQ(rt::is_valid_term(cut), rt::check_term(cut).has_value())
          << whole.size() << "/" << n;
      EXPECT_FALSE(rt::is_valid_term(cut));
      ++checked;
    }
    for (std::string tail : {std::string("\xc0"), std::string(9, 'x')}) {
      std::string longer = whole + tail;
      EXPECT_EQ(rt::is_valid_term(longer), rt::check_term(longer).has_value()) << whole.size();
      EXPECT_FALSE(rt::is_valid_term(longer));
      ++checked;
    }
  }
  // Every first byte alone, and followed by a few bytes: scalar or not, the
  // two checks agree.
  for (int b = 0; b < 256; ++b) {
    for (std::string rest :
         {std::string(), std::string(1, '\x01'), std::string(8, '\x00'), std::string(4, '\xff')}) {
      std::string body = std::string(1, static_cast<char>(b)) + rest;
      EXPECT_EQ(rt::is_valid_term(body), rt::check_term(body).has_value())
          << b << "+" << rest.size();
      ++checked;
    }
  }
  EXPECT_GT(checked, 1000u);
}

namespace {
// A type whose conversion unpacks a term of its own: a decode inside a
// decode on one thread. The outer term stays in the thread's zone while the
// inner ones run; were they to reuse (and clear) that zone, the outer
// elements not converted yet would be overwritten.
struct wrapped {
  std::vector<int> inner;
};
}  // namespace

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct convert<wrapped> {
    const msgpack::object& operator()(const msgpack::object& o, wrapped& w) const {
      auto r = rt::unpack<std::vector<int>>(o.as<std::string>());
      if (!r) {
        throw msgpack::type_error();
      }
      w.inner = *r;
      return o;
    }
  };
  }  // namespace adaptor
}
}  // namespace msgpack

TEST(DecodeLimits, UnpackReusesTheThreadsZoneAndADecodeInsideADecodeWorks) {
  // Terms of very different sizes in turn: the reused zone grows for the
  // large one and is cleared between decodes (no term sees another's bytes).
  std::string big(200000, 'x');
  for (int round = 0; round < 3; ++round) {
    auto s = rt::unpack<std::string>(rt::pack(big));
    ASSERT_TRUE(s);
    EXPECT_EQ(*s, big);
    auto v = rt::unpack<std::vector<int>>(rt::pack(std::vector<int>{1, 2, round}));
    ASSERT_TRUE(v);
    EXPECT_EQ(*v, (std::vector<int>{1, 2, round}));
    EXPECT_FALSE(rt::unpack<int>("\xc1"));  // malformed leaves the zone usable
  }
  std::vector<std::string> parts;
  for (int i = 0; i < 50; ++i) {
    parts.push_back(rt::pack(std::vector<int>(static_cast<std::size_t>(i), i)));
  }
  auto outer = rt::unpack<std::vector<wrapped>>(rt::pack(parts));
  ASSERT_TRUE(outer);
  ASSERT_EQ(outer->size(), parts.size());
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ((*outer)[static_cast<std::size_t>(i)].inner,
              std::vector<int>(static_cast<std::size_t>(i), i));
  }
}

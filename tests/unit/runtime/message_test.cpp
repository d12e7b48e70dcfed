// runtime::bytes, the body of a message: small bodies inline, larger ones in
// a shared block that copies share; the read interface of a string.
#include <string>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include <otpd/runtime/message.hpp>

namespace rt = otpd::runtime;

TEST(MessageBody, SmallBodiesLiveInlineLargeOnesShareOneBlock) {
  rt::bytes small(std::string(rt::bytes::inline_capacity, 's'));
  EXPECT_TRUE(small.is_inline());
  rt::bytes large(std::string(rt::bytes::inline_capacity + 1, 'l'));
  EXPECT_FALSE(large.is_inline());
  rt::bytes copy = large;
  EXPECT_EQ(copy.data(), large.data());  // shared, not copied
  EXPECT_EQ(copy, large);
  rt::bytes moved = std::move(copy);
  EXPECT_EQ(moved.data(), large.data());
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  rt::bytes small_copy = small;
  EXPECT_NE(small_copy.data(), small.data());
  EXPECT_EQ(small_copy, small);
}

TEST(MessageBody, AViewKeepsItsBlockAliveAfterTheOwnerLetsGo) {
  rt::shared_block* b = rt::shared_block::make(1000);
  std::string text(1000, '\0');
  for (std::size_t i = 0; i < text.size(); ++i) {
    text[i] = static_cast<char>('a' + i % 26);
  }
  std::memcpy(b->data(), text.data(), text.size());
  rt::bytes v = rt::bytes::view(b, b->data() + 100, 500);
  EXPECT_EQ(b->refs.load(), 2u);
  rt::shared_block::release(b);  // the owner's reference
  EXPECT_EQ(v, std::string_view(text).substr(100, 500));
  rt::bytes w = v;
  v = "short";  // v lets go; w still holds the block
  EXPECT_EQ(v, "short");
  EXPECT_EQ(w.size(), 500u);
  EXPECT_EQ(w[0], text[100]);
}

TEST(MessageBody, ReadsLikeAString) {
  rt::message m{rt::kind::user, 1, {}, rt::pack(std::string(200, 'q'))};
  std::string s = m.body;  // converts
  std::string_view sv = m.body;
  EXPECT_EQ(s, sv);
  EXPECT_EQ(m.body, s);
  EXPECT_EQ(s.size(), m.body.size());
  EXPECT_EQ(std::string(m.body.begin(), m.body.end()), s);
  EXPECT_EQ(*m.as<std::string>(), std::string(200, 'q'));
  std::string target;
  target = m.body;
  EXPECT_EQ(target, s);
  m.body.clear();
  EXPECT_TRUE(m.body.empty());
  m.body = s;  // back from a string
  EXPECT_EQ(m.body.str(), s);
  rt::bytes self_assign = rt::bytes(std::string(300, 'z'));
  self_assign = self_assign.view().substr(10);  // assigning a view of itself
  EXPECT_EQ(self_assign, std::string(290, 'z'));
}

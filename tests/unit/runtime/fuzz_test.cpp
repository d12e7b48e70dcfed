// Random bytes thrown at a live server's mailbox: each bad connection is
// dropped with a logged reason, and the server keeps answering calls.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include <otpd/core/log.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;

namespace {
class echo final : public rt::gen_server {
 public:
  std::optional<std::string> handle_call(const rt::message& req, const rt::from&) override {
    return req.body;
  }
};

int connect_raw(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}
}  // namespace

TEST(MailboxFuzz, RandomBytesNeverKillTheReceiver) {
  otpd::core::set_log_level(otpd::core::log_level::error);
  auto s = rt::start_server([] {
    otpd::core::set_log_level(otpd::core::log_level::error);
    return std::make_unique<echo>();
  });
  ASSERT_TRUE(s);
  std::string path = rt::runtime_dir() + "/mbox/" + std::to_string(*s);
  std::mt19937 rng(12345);
  for (int round = 0; round < 300; ++round) {
    int fd = connect_raw(path);
    ASSERT_GE(fd, 0) << "round " << round << ": the mailbox is gone";
    std::string junk(rng() % 512, '\0');
    for (auto& c : junk) {
      c = static_cast<char>(rng());
    }
    // A third of the rounds start with a plausible header, so the decoder
    // gets past the magic and meets bad kinds, lengths, senders and bodies.
    if (round % 3 == 0 && junk.size() >= 32) {
      junk[4] = static_cast<char>(0xB7);
      junk[5] = 1;
      junk[6] = static_cast<char>(rng() % 12);
      std::uint32_t len = rng() % 64;
      std::memcpy(junk.data(), &len, 4);
      pid_t me = ::getpid();
      if (round % 2 == 0) {
        std::memcpy(junk.data() + 8, &me, 4);
      }
    }
    ssize_t n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    (void)n;
    ::close(fd);
    if (round % 50 == 49) {
      auto r = rt::call<int>(*s, 7, t::scaled(5s));
      ASSERT_TRUE(r) << "round " << round << ": " << r.error().message();
      EXPECT_EQ(*r, 7);
    }
  }
  auto r = rt::call<std::string>(*s, std::string("still here"), t::scaled(5s));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "still here");
  ASSERT_TRUE(rt::stop_server(*s, t::scaled(5s)));
}

#include <fcntl.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <otpd/redis_client/blocking_client.hpp>
#include <otpd/testing/redis_server.hpp>

namespace rc = otpd::redis_client;
namespace t = otpd::testing;
using otpd::core::errc;
using std::chrono::milliseconds;

namespace {

class BlockingClient : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.running()) << server_.error(); }

  rc::blocking_client connect_tcp() {
    auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", server_.port()));
    EXPECT_TRUE(c) << c.error().message();
    return c ? std::move(*c) : rc::blocking_client{};
  }

  t::redis_server server_;
};

TEST_F(BlockingClient, PingOverTcpAndUnixSocket) {
  auto tcp = connect_tcp();
  auto r = tcp.command({"PING"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, rc::reply::status("PONG"));

  auto unix_client = rc::blocking_client::connect(rc::endpoint::unix_socket(server_.unix_path()));
  ASSERT_TRUE(unix_client) << unix_client.error().message();
  auto u = unix_client->command({"PING"});
  ASSERT_TRUE(u);
  EXPECT_EQ(*u, rc::reply::status("PONG"));
}

TEST_F(BlockingClient, SocketIsCloseOnExec) {
  auto c = connect_tcp();
  ASSERT_GE(c.fd(), 0);
  EXPECT_NE(::fcntl(c.fd(), F_GETFD) & FD_CLOEXEC, 0)
      << "hiredis' socket must not leak into children";
}

TEST_F(BlockingClient, SetThenGet) {
  auto c = connect_tcp();
  auto set = c.command({"SET", "greeting", "hello"});
  ASSERT_TRUE(set);
  EXPECT_EQ(*set, rc::reply::status("OK"));
  auto get = c.command({"GET", "greeting"});
  ASSERT_TRUE(get);
  EXPECT_EQ(*get, rc::reply::bulk("hello"));
}

TEST_F(BlockingClient, ValuesAreBinarySafe) {
  auto c = connect_tcp();
  const std::string value("a\0b\r\nc\r\n\0", 9);
  const std::string key("k\0\r\n", 4);
  ASSERT_TRUE(c.command(std::vector<std::string>{"SET", key, value}));
  auto get = c.command(std::vector<std::string>{"GET", key});
  ASSERT_TRUE(get);
  ASSERT_TRUE(get->is_string());
  EXPECT_EQ(get->str, value);
  EXPECT_EQ(get->str.size(), 9u);
}

TEST_F(BlockingClient, OneMebibyteValue) {
  auto c = connect_tcp();
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>(i * 31 + 7);
  }
  ASSERT_TRUE(c.command(std::vector<std::string>{"SET", "big", big}));
  auto get = c.command({"GET", "big"});
  ASSERT_TRUE(get);
  EXPECT_EQ(get->str.size(), big.size());
  EXPECT_TRUE(get->str == big);
  auto len = c.command({"STRLEN", "big"});
  ASSERT_TRUE(len);
  EXPECT_EQ(*len, rc::reply::of_integer(1 << 20));
}

TEST_F(BlockingClient, MissingKeyIsNil) {
  auto c = connect_tcp();
  auto get = c.command({"GET", "no-such-key"});
  ASSERT_TRUE(get);
  EXPECT_TRUE(get->is_nil());
}

TEST_F(BlockingClient, ErrorReplyIsAValueAndTheConnectionStaysUp) {
  auto c = connect_tcp();
  ASSERT_TRUE(c.command({"RPUSH", "a-list", "x"}));
  auto get = c.command({"GET", "a-list"});
  ASSERT_TRUE(get) << "an error reply is not a connection error";
  ASSERT_TRUE(get->is_error());
  EXPECT_EQ(get->str.rfind("WRONGTYPE", 0), 0u) << get->str;
  EXPECT_TRUE(c.connected());
  auto ping = c.command({"PING"});
  ASSERT_TRUE(ping);
  EXPECT_EQ(*ping, rc::reply::status("PONG"));
}

TEST_F(BlockingClient, NestedArrays) {
  auto c = connect_tcp();
  auto r = c.command({"EVAL", "return {1, {'two', {3}}, 'x'}", "0"});
  ASSERT_TRUE(r);
  auto want = rc::reply::array(
      {rc::reply::of_integer(1),
       rc::reply::array({rc::reply::bulk("two"), rc::reply::array({rc::reply::of_integer(3)})}),
       rc::reply::bulk("x")});
  EXPECT_EQ(*r, want) << r->to_string();
}

TEST_F(BlockingClient, TenThousandPipelinedCommandsAnsweredInOrder) {
  auto c = connect_tcp();
  constexpr int n = 10000;
  for (int i = 0; i < n; ++i) {
    std::string v = std::to_string(i);
    ASSERT_TRUE(c.append({"ECHO", v}));
  }
  for (int i = 0; i < n; ++i) {
    auto r = c.get_reply();
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->str, std::to_string(i));
  }
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 100; ++i) {
    cmds.push_back({"INCR", "counter"});
  }
  auto all = c.pipeline(cmds);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ((*all)[static_cast<std::size_t>(i)], rc::reply::of_integer(i + 1));
  }
}

TEST_F(BlockingClient, ConnectionRefusedIsAnErrorValue) {
  int port = t::free_port();
  auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", port));
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error() == std::errc::connection_refused) << c.error().message();
  auto u = rc::blocking_client::connect(rc::endpoint::unix_socket(server_.unix_path() + ".nope"));
  ASSERT_FALSE(u);
  EXPECT_TRUE(u.error() == std::errc::no_such_file_or_directory) << u.error().message();
}

TEST_F(BlockingClient, LostServerIsAConnectionErrorNotAReply) {
  auto c = connect_tcp();
  ASSERT_TRUE(c.command({"PING"}));
  server_.kill();
  auto r = c.command({"PING"});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error() == errc::closed || r.error() == std::errc::connection_reset ||
              r.error() == std::errc::broken_pipe)
      << r.error().message();
  EXPECT_FALSE(c.connected());
  auto again = c.command({"PING"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::disconnected);
}

TEST_F(BlockingClient, CommandTimesOutOnAStoppedServer) {
  rc::blocking_client::options o;
  o.command_timeout = milliseconds(200);
  auto c = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", server_.port()), o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->command({"PING"}));
  server_.pause();
  auto start = std::chrono::steady_clock::now();
  auto r = c->command({"PING"});
  auto took = std::chrono::steady_clock::now() - start;
  server_.resume();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout) << r.error().message();
  EXPECT_GE(took, milliseconds(190));
  // The late PONG would answer the wrong command: the client is done with.
  EXPECT_FALSE(c->connected());
  auto fresh = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", server_.port()), o);
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(fresh->command({"PING"}));
}

}  // namespace

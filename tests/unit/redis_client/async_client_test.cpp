#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "uv_loop_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/core/unique_fd.hpp>
#include <otpd/redis_client/async_client.hpp>
#include <otpd/testing/redis_server.hpp>

namespace rc = otpd::redis_client;
namespace t = otpd::testing;
using otpd::core::errc;
using std::chrono::milliseconds;

namespace {

class AsyncClient : public t::uv_loop_test {
 protected:
  void SetUp() override {
    uv_loop_test::SetUp();
    ASSERT_TRUE(server_.running()) << server_.error();
  }

  // Connects and waits for on_connect; fails the test if it does not come.
  rc::async_client connect(const rc::endpoint& where, rc::async_client::options o = {}) {
    std::optional<std::error_code> result;
    rc::async_client::handlers h;
    h.on_connect = [&result](std::error_code ec) { result = ec; };
    h.on_disconnect = [this](std::error_code ec) { disconnects_.push_back(ec); };
    auto c = rc::async_client::connect(loop(), where, o, std::move(h));
    EXPECT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_TRUE(result && !*result) << (result ? result->message() : "no on_connect");
    return c;
  }
  rc::async_client connect_tcp(rc::async_client::options o = {}) {
    return connect(rc::endpoint::tcp("127.0.0.1", server_.port()), o);
  }

  // Sends one command and runs the loop until it is answered.
  rc::reply_result call(rc::async_client& c, rc::command_args args) {
    std::optional<rc::reply_result> out;
    c.command(std::move(args), [&out](rc::reply_result r) { out = std::move(r); });
    EXPECT_TRUE(run_until([&] { return out.has_value(); }));
    return out ? std::move(*out) : rc::reply_result(errc::timeout);
  }

  t::redis_server server_;
  std::vector<std::error_code> disconnects_;
};

TEST_F(AsyncClient, PingOverTcpAndUnixSocket) {
  auto tcp = connect_tcp();
  auto r = call(tcp, {"PING"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, rc::reply::status("PONG"));
  auto u = connect(rc::endpoint::unix_socket(server_.unix_path()));
  auto ur = call(u, {"PING"});
  ASSERT_TRUE(ur);
  EXPECT_EQ(*ur, rc::reply::status("PONG"));
}

TEST_F(AsyncClient, SetGetBinaryNilAndErrorReply) {
  auto c = connect_tcp();
  const std::string value("x\0y\r\nz", 6);
  ASSERT_TRUE(call(c, std::vector<std::string>{"SET", "bin", value}));
  auto get = call(c, {"GET", "bin"});
  ASSERT_TRUE(get);
  EXPECT_EQ(get->str, value);
  auto nil = call(c, {"GET", "missing"});
  ASSERT_TRUE(nil);
  EXPECT_TRUE(nil->is_nil());
  ASSERT_TRUE(call(c, {"SADD", "a-set", "m"}));
  auto wrong = call(c, {"INCR", "a-set"});
  ASSERT_TRUE(wrong);
  ASSERT_TRUE(wrong->is_error());
  EXPECT_EQ(wrong->str.rfind("WRONGTYPE", 0), 0u);
  EXPECT_TRUE(c.connected());
}

TEST_F(AsyncClient, OneMebibyteValue) {
  auto c = connect_tcp();
  std::string big(1 << 20, 'v');
  big[12345] = '\0';
  ASSERT_TRUE(call(c, std::vector<std::string>{"SET", "big", big}));
  auto get = call(c, {"GET", "big"});
  ASSERT_TRUE(get);
  EXPECT_TRUE(get->str == big);
}

TEST_F(AsyncClient, TenThousandInFlightAnsweredInOrder) {
  auto c = connect_tcp();
  constexpr int n = 10000;
  std::vector<int> order;
  int errors = 0;
  for (int i = 0; i < n; ++i) {
    std::string v = std::to_string(i);
    c.command({"ECHO", v}, milliseconds(0), [&order, &errors, i](rc::reply_result r) {
      if (!r || r->str != std::to_string(i)) {
        ++errors;
      }
      order.push_back(i);
    });
  }
  EXPECT_GT(c.in_flight(), 0u);
  ASSERT_TRUE(run_until([&] { return order.size() == n; }));
  EXPECT_EQ(errors, 0);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(order[static_cast<std::size_t>(i)], i);
  }
  EXPECT_EQ(c.in_flight(), 0u);
}

TEST_F(AsyncClient, RefusedConnectReachesOnConnectAndRequestsError) {
  std::optional<std::error_code> result;
  rc::async_client::handlers h;
  h.on_connect = [&result](std::error_code ec) { result = ec; };
  auto c = rc::async_client::connect(loop(), rc::endpoint::tcp("127.0.0.1", t::free_port()), {},
                                     std::move(h));
  std::optional<rc::reply_result> r;
  c.command({"PING"}, [&r](rc::reply_result x) { r = std::move(x); });
  EXPECT_FALSE(r.has_value()) << "never answered from inside command()";
  ASSERT_TRUE(run_until([&] { return result.has_value() && r.has_value(); }));
  EXPECT_TRUE(*result == std::errc::connection_refused) << result->message();
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error(), errc::disconnected);
  // Dead for good: a new request fails, from the loop.
  std::optional<rc::reply_result> later;
  c.command({"PING"}, [&later](rc::reply_result x) { later = std::move(x); });
  ASSERT_TRUE(run_until([&] { return later.has_value(); }));
  EXPECT_EQ(later->error(), errc::disconnected);
}

TEST_F(AsyncClient, ServerKilledUnderLoadAnswersEveryRequest) {
  auto c = connect_tcp();
  int answered = 0;
  int failed = 0;
  int sent = 0;
  // Keep 64 requests in flight until the server dies under them.
  std::function<void()> send_one;
  send_one = [&] {
    ++sent;
    c.command({"INCR", "n"}, milliseconds(0), [&](rc::reply_result r) {
      ++answered;
      if (!r) {
        EXPECT_EQ(r.error(), errc::disconnected) << r.error().message();
        ++failed;
        return;
      }
      if (sent < 1000000) {
        send_one();
      }
    });
  };
  for (int i = 0; i < 64; ++i) {
    send_one();
  }
  ASSERT_TRUE(run_until([&] { return answered > 2000; }));
  server_.kill();
  ASSERT_TRUE(run_until([&] { return answered == sent && !disconnects_.empty(); }))
      << "answered " << answered << " of " << sent << ", disconnects " << disconnects_.size();
  EXPECT_EQ(failed, 64) << "every request in flight errors";
  EXPECT_FALSE(c.connected());
  EXPECT_EQ(c.in_flight(), 0u);
}

TEST_F(AsyncClient, StoppedServerTimesRequestsOutThenServesAfterSigcont) {
  auto c = connect_tcp();
  ASSERT_TRUE(call(c, {"PING"}));
  server_.pause();
  std::vector<std::pair<int, std::chrono::steady_clock::duration>> timeouts;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    c.command({"PING"}, milliseconds(100 * (i + 1)), [&, i](rc::reply_result r) {
      EXPECT_FALSE(r);
      EXPECT_EQ(r.error(), errc::timeout);
      timeouts.emplace_back(i, std::chrono::steady_clock::now() - start);
    });
  }
  ASSERT_TRUE(run_until([&] { return timeouts.size() == 3; }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(timeouts[static_cast<std::size_t>(i)].first, i) << "in deadline order";
    EXPECT_GE(timeouts[static_cast<std::size_t>(i)].second, milliseconds(100 * (i + 1)));
  }
  EXPECT_EQ(c.in_flight(), 0u);
  EXPECT_TRUE(c.connected()) << "a timeout does not drop the connection";
  server_.resume();
  // The three late PONGs are read and dropped; this one gets its own reply.
  auto r = call(c, {"ECHO", "after"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->str, "after");
}

TEST_F(AsyncClient, BoundedPipelineRefusesWhileTimedOutRepliesAreOwed) {
  rc::async_client::options o;
  o.max_in_flight = 4;
  auto c = connect_tcp(o);
  server_.pause();
  int timeouts = 0;
  for (int i = 0; i < 4; ++i) {
    c.command({"PING"}, milliseconds(50), [&timeouts](rc::reply_result r) {
      timeouts += (!r && r.error() == errc::timeout) ? 1 : 0;
    });
  }
  ASSERT_TRUE(run_until([&] { return timeouts == 4; }));
  // Their replies are still owed by the server: the pipeline is full.
  auto refused = call(c, {"PING"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::busy);
  server_.resume();
  // Once the late replies are read, there is room again. Each try waits for
  // its own answer (a busy one comes on the next loop turn, which also reads
  // what the server sent meanwhile).
  auto end = std::chrono::steady_clock::now() + t::scaled(milliseconds(5000));
  auto r = call(c, {"PING"});
  while (!r && r.error() == errc::busy && std::chrono::steady_clock::now() < end) {
    r = call(c, {"PING"});
  }
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, rc::reply::status("PONG"));
}

TEST_F(AsyncClient, DestroyedInsideAReplyCallbackAnswersTheRest) {
  std::optional<rc::async_client> c(connect_tcp());
  std::vector<std::error_code> results;
  for (int i = 0; i < 10; ++i) {
    c->command({"PING"}, [&, i](rc::reply_result r) {
      results.push_back(r ? std::error_code{} : r.error());
      if (i == 2) {
        c.reset();  // the client goes away inside its own callback
      }
    });
  }
  ASSERT_TRUE(run_until([&] { return results.size() == 10; }));
  for (std::size_t i = 0; i < 10; ++i) {
    if (i <= 2) {
      EXPECT_FALSE(results[i]) << i;
    } else {
      EXPECT_EQ(results[i], errc::shutting_down) << i;
    }
  }
}

TEST_F(AsyncClient, DestroyedWithRequestsInFlightAnswersThemAtOnce) {
  std::vector<std::error_code> results;
  {
    auto c = connect_tcp();
    for (int i = 0; i < 100; ++i) {
      c.command({"PING"},
                [&](rc::reply_result r) { results.push_back(r ? std::error_code{} : r.error()); });
    }
  }
  ASSERT_EQ(results.size(), 100u) << "answered before the destructor returned";
  for (auto& e : results) {
    EXPECT_EQ(e, errc::shutting_down);
  }
}

// A listening socket whose accept queue is full drops new SYNs: a TCP
// connect to it neither succeeds nor fails until our connect timer ends it.
class full_listener {
 public:
  full_listener() {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_.get(), 0), 0);
    EXPECT_EQ(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    for (auto& f : fillers_) {
      f.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      (void)::connect(f.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
  }
  [[nodiscard]] int port() const { return port_; }

 private:
  otpd::core::unique_fd fd_;
  std::array<otpd::core::unique_fd, 4> fillers_;
  int port_ = 0;
};

TEST_F(AsyncClient, ConnectTimesOutOnItsTimer) {
  full_listener stuck;
  std::optional<std::error_code> result;
  rc::async_client::options o;
  o.connect_timeout = milliseconds(150);
  rc::async_client::handlers h;
  h.on_connect = [&result](std::error_code ec) { result = ec; };
  auto start = std::chrono::steady_clock::now();
  auto c = rc::async_client::connect(loop(), rc::endpoint::tcp("127.0.0.1", stuck.port()), o,
                                     std::move(h));
  std::optional<rc::reply_result> r;
  c.command({"PING"}, milliseconds(0), [&r](rc::reply_result x) { r = std::move(x); });
  ASSERT_TRUE(run_until([&] { return result.has_value() && r.has_value(); }));
  EXPECT_EQ(*result, errc::timeout) << result->message();
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(150));
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error(), errc::timeout);
  EXPECT_FALSE(c.connected());
}

}  // namespace

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "uv_loop_fixture.hpp"
#include <gtest/gtest.h>

#include <otpd/redis_client/blocking_client.hpp>
#include <otpd/redis_client/connection.hpp>
#include <otpd/testing/redis_server.hpp>

namespace rc = otpd::redis_client;
namespace t = otpd::testing;
using otpd::core::errc;
using rc::connection_state;
using std::chrono::milliseconds;

namespace {

class Connection : public t::uv_loop_test {
 protected:
  void SetUp() override {
    uv_loop_test::SetUp();
    ASSERT_TRUE(server_.running()) << server_.error();
  }

  rc::connection::options tcp_options() {
    rc::connection::options o;
    o.where = rc::endpoint::tcp("127.0.0.1", server_.port());
    o.name = "redis-test";
    o.backoff_base = milliseconds(20);
    o.backoff_cap = milliseconds(160);
    o.connect_timeout = milliseconds(300);
    o.request_timeout = milliseconds(2000);
    o.seed = 42;
    return o;
  }

  rc::connection make(rc::connection::options o) {
    return rc::connection(loop(), std::move(o),
                          [this](const rc::connection::transition& tr) { log_.push_back(tr); });
  }

  bool wait_state(rc::connection& c, connection_state s,
                  milliseconds timeout = milliseconds(10000)) {
    return run_until([&] { return c.state() == s; }, timeout);
  }

  rc::reply_result call(rc::connection& c, rc::command_args args,
                        milliseconds timeout = milliseconds(2000)) {
    std::optional<rc::reply_result> out;
    c.command(std::move(args), timeout, [&out](rc::reply_result r) { out = std::move(r); });
    EXPECT_FALSE(out.has_value()) << "never answered from inside command()";
    EXPECT_TRUE(run_until([&] { return out.has_value(); }));
    return out ? std::move(*out) : rc::reply_result(errc::timeout);
  }

  t::redis_server server_;
  std::vector<rc::connection::transition> log_;
};

TEST_F(Connection, ConnectsAndReportsEachStateChange) {
  auto c = make(tcp_options());
  EXPECT_EQ(c.state(), connection_state::disconnected);
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[0].from, connection_state::disconnected);
  EXPECT_EQ(log_[0].to, connection_state::connecting);
  EXPECT_EQ(log_[1].from, connection_state::connecting);
  EXPECT_EQ(log_[1].to, connection_state::connected);
  auto r = call(c, {"SET", "k", "v"});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, rc::reply::status("OK"));
  EXPECT_EQ(c.attempts(), 1u);
  EXPECT_EQ(c.connects(), 1u);
}

TEST_F(Connection, WorksOverTheUnixSocket) {
  auto o = tcp_options();
  o.where = rc::endpoint::unix_socket(server_.unix_path());
  auto c = make(o);
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  auto r = call(c, {"ECHO", std::string_view("\0\r\n", 3)});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->str, std::string("\0\r\n", 3));
}

TEST_F(Connection, RequestsFailFastWhileDisconnected) {
  auto c = make(tcp_options());
  auto before = call(c, {"PING"});  // not started yet
  ASSERT_FALSE(before);
  EXPECT_EQ(before.error(), errc::disconnected);

  server_.kill();
  c.start();
  ASSERT_TRUE(run_until([&] { return c.attempts() >= 2; }));
  auto start = std::chrono::steady_clock::now();
  auto r = call(c, {"PING"}, milliseconds(5000));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::disconnected);
  EXPECT_LT(std::chrono::steady_clock::now() - start, t::scaled(milliseconds(1000)))
      << "failing fast does not wait for the request's deadline";
}

TEST_F(Connection, QueueModeTimesOutAndIsBounded) {
  server_.kill();
  auto o = tcp_options();
  o.queue_while_disconnected = true;
  o.max_queue = 2;
  auto c = make(o);
  c.start();
  std::vector<std::pair<int, rc::reply_result>> got;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    c.command({"PING"}, milliseconds(150),
              [&got, i](rc::reply_result r) { got.emplace_back(i, std::move(r)); });
  }
  EXPECT_EQ(c.queued(), 2u);
  ASSERT_TRUE(run_until([&] { return got.size() == 3; }));
  EXPECT_EQ(got[0].first, 2) << "the one over the bound is refused first";
  EXPECT_EQ(got[0].second.error(), errc::busy);
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(got[i].second.error(), errc::timeout);
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(150));
  EXPECT_EQ(c.queued(), 0u);
}

TEST_F(Connection, QueueModeSendsQueuedRequestsOnceConnected) {
  server_.kill();
  auto o = tcp_options();
  o.queue_while_disconnected = true;
  auto c = make(o);
  c.start();
  std::vector<rc::reply_result> got;
  for (int i = 0; i < 5; ++i) {
    c.command({"INCR", "queued"}, milliseconds(20000),
              [&got](rc::reply_result r) { got.push_back(std::move(r)); });
  }
  ASSERT_TRUE(run_until([&] { return c.attempts() >= 2; }));
  EXPECT_TRUE(got.empty());
  ASSERT_TRUE(server_.start()) << server_.error();
  ASSERT_TRUE(run_until([&] { return got.size() == 5; }));
  for (std::size_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(got[i]) << got[i].error().message();
    EXPECT_EQ(*got[i], rc::reply::of_integer(static_cast<std::int64_t>(i + 1)));
  }
}

TEST_F(Connection, ServerKilledUnderLoadThenBackWithBackoff) {
  auto o = tcp_options();
  auto c = make(o);
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));

  int sent = 0;
  int ok = 0;
  std::vector<std::error_code> errors;
  std::function<void()> send_one;
  send_one = [&] {
    ++sent;
    c.command({"INCR", "load"}, [&](rc::reply_result r) {
      if (!r) {
        errors.push_back(r.error());
        return;
      }
      ++ok;
      if (c.state() == connection_state::connected) {
        send_one();
      }
    });
  };
  for (int i = 0; i < 64; ++i) {
    send_one();
  }
  ASSERT_TRUE(run_until([&] { return ok > 2000; }));
  server_.kill();
  ASSERT_TRUE(run_until([&] { return ok + static_cast<int>(errors.size()) == sent; }))
      << "nothing hangs: every request is answered";
  EXPECT_FALSE(errors.empty());
  for (auto& e : errors) {
    EXPECT_EQ(e, errc::disconnected) << e.message();
  }
  EXPECT_EQ(c.in_flight(), 0u);

  // Reconnect attempts fail while the server is down, with growing delays.
  ASSERT_TRUE(run_until([&] { return c.attempts() >= 6; }));
  std::vector<rc::connection::transition> retries;
  for (auto& tr : log_) {
    if (tr.to == connection_state::disconnected) {
      retries.push_back(tr);
    }
  }
  ASSERT_GE(retries.size(), 5u);
  EXPECT_EQ(retries[0].from, connection_state::connected);
  for (std::size_t i = 0; i < retries.size(); ++i) {
    // Delay of the i-th retry: base * 2^i, capped, minus up to half (jitter).
    auto full = std::min<long>(20L << i, 160L);
    EXPECT_GE(retries[i].retry_in.count(), full / 2 - 1) << i;
    EXPECT_LE(retries[i].retry_in.count(), full) << i;
    EXPECT_TRUE(retries[i].reason) << i;
  }

  ASSERT_TRUE(server_.start()) << server_.error();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  EXPECT_EQ(c.connects(), 2u);
  auto r = call(c, {"GET", "load"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->is_nil()) << "a fresh server (no persistence)";
}

TEST_F(Connection, ReconnectsLeakNoFileDescriptors) {
  const int before = t::count_open_fds();
  {
    auto c = make(tcp_options());
    c.start();
    for (int round = 0; round < 3; ++round) {
      ASSERT_TRUE(wait_state(c, connection_state::connected));
      ASSERT_TRUE(call(c, {"PING"}));
      server_.kill();
      ASSERT_TRUE(wait_state(c, connection_state::disconnected));
      ASSERT_TRUE(
          run_until([&] { return c.attempts() >= 2u + 2u * static_cast<unsigned>(round); }));
      ASSERT_TRUE(server_.start()) << server_.error();
    }
    ASSERT_TRUE(wait_state(c, connection_state::connected));
  }
  // The destroyed connection's handles close on the loop; then every fd of
  // every attempt is gone.
  ASSERT_TRUE(run_until([&] { return active_handles() == 0; }));
  EXPECT_EQ(t::count_open_fds(), before);
}

TEST_F(Connection, StoppedServerTimesRequestsOutAndTheyWorkAfterSigcont) {
  auto c = make(tcp_options());
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  server_.pause();
  auto start = std::chrono::steady_clock::now();
  auto r = call(c, {"PING"}, milliseconds(200));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
  EXPECT_EQ(c.state(), connection_state::connected);
  server_.resume();
  auto after = call(c, {"ECHO", "back"});
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->str, "back");
}

TEST_F(Connection, ConnectedMeansRedisAnsweredPing) {
  // A stopped server still completes TCP handshakes in the kernel; only the
  // PING tells that nobody answers.
  server_.pause();
  auto o = tcp_options();
  o.connect_timeout = milliseconds(100);
  auto c = make(o);
  c.start();
  ASSERT_TRUE(run_until([&] { return c.attempts() >= 2; }));
  EXPECT_NE(c.state(), connection_state::connected);
  ASSERT_FALSE(log_.empty());
  bool saw_timeout = false;
  for (auto& tr : log_) {
    saw_timeout = saw_timeout || tr.reason == errc::timeout;
  }
  EXPECT_TRUE(saw_timeout);
  server_.resume();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  EXPECT_TRUE(call(c, {"PING"}));
}

TEST_F(Connection, StopAnswersEverythingAndStopsReconnecting) {
  auto o = tcp_options();
  auto c = make(o);
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  server_.pause();  // keeps requests in flight
  std::vector<std::error_code> got;
  for (int i = 0; i < 10; ++i) {
    c.command({"PING"}, [&got](rc::reply_result r) { got.push_back(r.error()); });
  }
  c.stop();
  EXPECT_EQ(c.state(), connection_state::disconnected);
  ASSERT_TRUE(run_until([&] { return got.size() == 10; }));
  for (auto& e : got) {
    EXPECT_EQ(e, errc::shutting_down);
  }
  server_.resume();
  // No retry timer, no client: the connection leaves no active handle.
  ASSERT_TRUE(run_until([&] { return active_handles() == 0; }));
  EXPECT_EQ(c.attempts(), 1u);
  auto r = call(c, {"PING"});
  EXPECT_EQ(r.error(), errc::disconnected);
}

TEST_F(Connection, DestroyedInsideItsStateCallback) {
  std::optional<rc::connection> c;
  int calls = 0;
  c.emplace(loop(), tcp_options(), [&](const rc::connection::transition& tr) {
    ++calls;
    if (tr.to == connection_state::connected) {
      c.reset();
    }
  });
  c->start();
  ASSERT_TRUE(run_until([&] { return !c.has_value(); }));
  EXPECT_EQ(calls, 2);
}

TEST_F(Connection, DestroyedWithQueuedAndInFlightRequestsAnswersThemAtOnce) {
  std::vector<std::error_code> got;
  {
    auto o = tcp_options();
    o.queue_while_disconnected = true;
    auto c = make(o);
    c.start();
    c.command({"PING"}, [&got](rc::reply_result r) { got.push_back(r.error()); });  // queued
    ASSERT_TRUE(run_until([&] { return got.size() == 1; }));
    server_.pause();
    c.command({"PING"}, [&got](rc::reply_result r) { got.push_back(r.error()); });  // in flight
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_FALSE(got[0]);
  EXPECT_EQ(got[1], errc::shutting_down);
  server_.resume();
}

}  // namespace

namespace {

TEST_F(Connection, SelectsItsDatabaseOnEveryConnect) {
  auto o = tcp_options();
  o.database = 2;
  auto c = make(o);
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));
  ASSERT_TRUE(call(c, {"SET", "where", "db2"}));
  auto check = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", server_.port()));
  ASSERT_TRUE(check);
  auto in0 = check->command({"GET", "where"});
  ASSERT_TRUE(in0);
  EXPECT_TRUE(in0->is_nil());
  ASSERT_TRUE(check->command({"SELECT", "2"}));
  auto in2 = check->command({"GET", "where"});
  ASSERT_TRUE(in2);
  EXPECT_EQ(in2->str, "db2");
  // After a reconnect the connection is in database 2 again.
  server_.kill();
  ASSERT_TRUE(server_.start()) << server_.error();
  ASSERT_TRUE(run_until([&] { return c.connects() == 2; }));
  ASSERT_TRUE(call(c, {"SET", "again", "x"}));
  auto check2 = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", server_.port()));
  ASSERT_TRUE(check2);
  ASSERT_TRUE(check2->command({"SELECT", "2"}));
  auto again = check2->command({"EXISTS", "again"});
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, rc::reply::of_integer(1));
}

TEST_F(Connection, AuthenticatesAndAWrongPasswordNeverConnects) {
  auto admin = rc::blocking_client::connect(rc::endpoint::tcp("127.0.0.1", server_.port()));
  ASSERT_TRUE(admin);
  ASSERT_TRUE(admin->command({"CONFIG", "SET", "requirepass", "s3cret"}));

  auto bad_opts = tcp_options();
  bad_opts.password = "wrong";
  auto bad = make(bad_opts);
  bad.start();
  ASSERT_TRUE(run_until([&] { return bad.attempts() >= 3; }));
  EXPECT_EQ(bad.connects(), 0u);
  bool refused = false;
  for (auto& tr : log_) {
    refused = refused || tr.reason == errc::protocol;
  }
  EXPECT_TRUE(refused);
  bad.stop();

  auto good_opts = tcp_options();
  good_opts.password = "s3cret";
  auto good = make(good_opts);
  good.start();
  ASSERT_TRUE(wait_state(good, connection_state::connected));
  auto r = call(good, {"PING"});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, rc::reply::status("PONG"));
}

}  // namespace

namespace {

// Many requests through kills, restarts, a stop and a continue of the server,
// with short deadlines: each one gets exactly one answer, and the connection
// ends up serving again.
TEST_F(Connection, EveryRequestIsAnsweredExactlyOnceThroughKillsAndStops) {
  auto o = tcp_options();
  o.queue_while_disconnected = true;
  o.max_queue = 256;
  o.request_timeout = milliseconds(100);
  auto c = make(o);
  c.start();
  ASSERT_TRUE(wait_state(c, connection_state::connected));

  std::vector<int> answers;
  int ok = 0;
  bool flooding = true;
  std::function<void()> send_one;
  send_one = [&] {
    std::size_t id = answers.size();
    answers.push_back(0);
    c.command({"INCR", "n"}, [&, id](rc::reply_result r) {
      ++answers[id];
      ok += r ? 1 : 0;
      if (flooding) {
        send_one();
      }
    });
  };
  for (int i = 0; i < 32; ++i) {
    send_one();
  }
  for (int round = 0; round < 3; ++round) {
    int ok_before = ok;
    ASSERT_TRUE(run_until([&] { return ok > ok_before + 500; }));
    server_.kill();
    ASSERT_TRUE(wait_state(c, connection_state::disconnected));
    ASSERT_TRUE(server_.start()) << server_.error();
    ASSERT_TRUE(wait_state(c, connection_state::connected));
    ok_before = ok;
    ASSERT_TRUE(run_until([&] { return ok > ok_before + 500; }));
    server_.pause();
    std::size_t sent_before = answers.size();
    ASSERT_TRUE(run_until([&] { return answers.size() > sent_before + 32; }))
        << "deadlines keep answering while the server is stopped";
    server_.resume();
  }
  flooding = false;
  ASSERT_TRUE(run_until([&] {
    for (int a : answers) {
      if (a == 0) {
        return false;
      }
    }
    return true;
  }));
  for (std::size_t i = 0; i < answers.size(); ++i) {
    ASSERT_EQ(answers[i], 1) << "request " << i;
  }
  EXPECT_GT(ok, 3000);
  EXPECT_EQ(c.state(), connection_state::connected);
}

}  // namespace

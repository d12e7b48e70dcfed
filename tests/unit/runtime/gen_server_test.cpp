#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include <otpd/runtime/gen_server.hpp>
#include <otpd/testing/testing.hpp>

namespace rt = otpd::runtime;
namespace t = otpd::testing;
using namespace std::chrono_literals;
using otpd::core::errc;
using otpd::core::exit_kind;
using otpd::core::exit_reason;

namespace {

auto long_wait() {
  return rt::deadline::after(t::scaled(20s));
}

// A counter with every kind of callback; writes a file in terminate() so the
// test can see that an orderly stop ran it.
class counter final : public rt::gen_server {
 public:
  explicit counter(std::string terminate_file = {}, bool fail_init = false)
      : terminate_file_(std::move(terminate_file)), fail_init_(fail_init) {}

  otpd::core::Result<void> init() override {
    if (fail_init_) {
      return errc::invalid_argument;
    }
    return {};
  }
  std::optional<std::string> handle_call(const rt::message& req, const rt::from& caller) override {
    auto what = req.as<std::string>().value_or("");
    if (what == "get") {
      return rt::pack(n_);
    }
    if (what == "die") {
      std::_Exit(9);  // mid-call, without replying
    }
    if (what == "blob") {
      return rt::pack(std::string(1u << 20, 'x'));
    }
    if (what == "parked") {
      return rt::pack(deferred_.has_value());
    }
    if (what == "later") {
      deferred_ = caller;  // answered by the next cast
      return std::nullopt;
    }
    return rt::pack(std::string("unknown call"));
  }
  void handle_cast(const rt::message& req) override {
    if (req.as<std::string>().value_or("") == "inc") {
      ++n_;
    }
    if (deferred_) {
      (void)rt::reply_with(*deferred_, std::string("deferred:") + std::to_string(n_));
      deferred_.reset();
    }
  }
  void terminate(const exit_reason& reason) override {
    if (!terminate_file_.empty()) {
      std::ofstream(terminate_file_) << reason.to_string();
    }
  }

 private:
  int n_ = 0;
  std::optional<rt::from> deferred_;
  std::string terminate_file_;
  bool fail_init_;
};

pid_t start_counter(const std::string& file = {}) {
  auto pid = rt::start_server([file] { return std::make_unique<counter>(file); });
  EXPECT_TRUE(pid) << pid.error().message();
  return pid.value_or(-1);
}

}  // namespace

TEST(GenServer, CallAndCast) {
  pid_t s = start_counter();
  ASSERT_TRUE(rt::cast(s, std::string("inc")));
  ASSERT_TRUE(rt::cast(s, std::string("inc")));
  auto n = rt::call<int>(s, std::string("get"), t::scaled(5s));
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 2);
  ASSERT_TRUE(rt::stop_server(s, t::scaled(5s)));
}

TEST(GenServer, InitFailureIsTheStartsError) {
  auto pid = rt::start_server([] { return std::make_unique<counter>("", true); });
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error(), errc::start_failed);
  EXPECT_TRUE(t::zombie_children().empty());
}

TEST(GenServer, DeferredReply) {
  pid_t s = start_counter();
  pid_t me = rt::self();
  // A helper makes the deferred call; we then cast, which releases the reply.
  auto caller = rt::spawn([s, me] {
    auto r = rt::call<std::string>(s, std::string("later"), t::scaled(10s));
    (void)rt::send(me, r ? *r : std::string("error"));
    return 0;
  });
  ASSERT_TRUE(caller);
  // Wait until the helper's call is parked in the server.
  ASSERT_TRUE(t::wait_until(
      [s] { return rt::call<bool>(s, std::string("parked"), t::scaled(5s)).value_or(false); }));
  ASSERT_TRUE(rt::cast(s, std::string("inc")));
  auto m = rt::receive([](const rt::message& x) { return x.kind == rt::kind::user; }, long_wait());
  ASSERT_TRUE(m);
  EXPECT_EQ(*m->as<std::string>(), "deferred:1");
  ASSERT_TRUE(rt::stop_server(s, t::scaled(5s)));
}

TEST(GenServer, CallToADeadServerErrorsAtOnce) {
  pid_t s = start_counter();
  auto mon = rt::monitor(s);
  ::kill(s, SIGKILL);
  ASSERT_TRUE(rt::receive_ref(mon, long_wait()));
  exit_reason why;
  auto r = rt::call<int>(s, std::string("get"), t::scaled(10s), &why);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::noproc);
  EXPECT_EQ(rt::call<int>(std::string("no_such_server"), 1).error(), errc::noproc);
}

// The DOWN ends the call, not its timeout: errc::crashed says so, and the
// call returns long before a timeout far beyond any scheduling delay.
TEST(GenServer, ServerDyingMidCallErrorsWithoutWaitingForTheTimeout) {
  pid_t s = start_counter();
  exit_reason why;
  const auto timeout = t::scaled(60s);
  auto start = std::chrono::steady_clock::now();
  auto r = rt::call<int>(s, std::string("die"), timeout, &why);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::crashed);
  EXPECT_EQ(why, exit_reason::code(9));
  EXPECT_LT(took, timeout / 2);
}

// A caller that sends calls and never reads its mailbox fills it with
// replies; the server must go on serving everyone else. Each 1 MiB reply
// that finds no room would once cost the server a whole send timeout (5 s);
// now the first waits reply_timeout and the rest are dropped at once, so the
// cast queued behind 40 of them is handled long before the deadline.
TEST(GenServer, ACallerThatNeverReadsDoesNotStallTheServer) {
  pid_t s = start_counter();
  pid_t me = rt::self();
  auto hostile = rt::spawn([s, me] {
    for (int i = 0; i < 40; ++i) {
      if (!rt::send_request(s, rt::pack(std::string("blob")))) {
        return 1;
      }
    }
    // Queued behind the 40 calls on the same connection.
    if (!rt::cast(s, std::string("inc")) || !rt::send(me, std::string("sent"))) {
      return 1;
    }
    ::pause();  // never reads its mailbox again
    return 0;
  });
  ASSERT_TRUE(hostile);
  auto m = rt::receive([](const rt::message& x) { return x.kind == rt::kind::user; }, long_wait());
  ASSERT_TRUE(m);
  ASSERT_EQ(*m->as<std::string>(), "sent");
  ASSERT_TRUE(t::wait_until(
      [s] { return rt::call<int>(s, std::string("get"), t::scaled(5s)).value_or(0) == 1; },
      t::scaled(30s)))
      << "the server is still stuck on replies nobody reads";
  EXPECT_EQ(::kill(hostile->pid, 0), 0);  // nobody was killed for it
  ::kill(hostile->pid, SIGKILL);
  ASSERT_TRUE(rt::stop_server(s, t::scaled(5s)));
}

TEST(GenServer, UnknownMessagesAreLoggedNotFatal) {
  pid_t s = start_counter();
  ASSERT_TRUE(rt::send(s, std::string("who reads this?")));
  ASSERT_TRUE(rt::send_message(s, rt::kind::reply, rt::make_ref(), rt::pack(1)));
  auto n = rt::call<int>(s, std::string("get"), t::scaled(5s));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0);
  ASSERT_TRUE(rt::stop_server(s, t::scaled(5s)));
}

TEST(GenServer, OrderlyStopRunsTerminate) {
  t::temp_dir dir;
  std::string file = dir.path() + "/terminated";
  pid_t s = start_counter(file);
  auto mon = rt::monitor(s);
  ASSERT_TRUE(rt::stop_server(s, t::scaled(5s)));
  auto down = rt::receive_ref(mon, long_wait());
  ASSERT_TRUE(down);
  EXPECT_EQ(down->reason(), exit_reason::normal());
  EXPECT_EQ(t::read_file(file), "shutdown");
}

TEST(GenServer, SigtermIsAnOrderlyStop) {
  t::temp_dir dir;
  std::string file = dir.path() + "/terminated";
  pid_t s = start_counter(file);
  auto mon = rt::monitor(s);
  ASSERT_EQ(t::sh("kill -TERM " + std::to_string(s)), 0);
  auto down = rt::receive_ref(mon, long_wait());
  ASSERT_TRUE(down);
  EXPECT_EQ(down->reason(), exit_reason::normal());
  EXPECT_EQ(t::read_file(file), "shutdown");
}

TEST(GenServer, RegisteredNameAndLinkedStart) {
  auto pid = rt::start_server([] { return std::make_unique<counter>(); }, {.name = "counter_srv"});
  ASSERT_TRUE(pid);
  EXPECT_EQ(*rt::whereis("counter_srv"), *pid);
  ASSERT_TRUE(rt::cast(std::string("counter_srv"), std::string("inc")));
  EXPECT_EQ(*rt::call<int>(std::string("counter_srv"), std::string("get")), 1);
  ASSERT_TRUE(rt::stop_server(std::string("counter_srv"), t::scaled(5s)));
  EXPECT_EQ(rt::whereis("counter_srv").error(), errc::noproc);
}

TEST(Agent, GetAndNamedUpdates) {
  auto a =
      rt::agent<int>::start(10, {{"double", [](int& s) { s *= 2; }}, {"inc", [](int& s) { ++s; }}});
  ASSERT_TRUE(a);
  EXPECT_EQ(*a->get(), 10);
  EXPECT_EQ(*a->update("double"), 20);
  EXPECT_EQ(*a->update("inc"), 21);
  ASSERT_TRUE(a->put(5));
  EXPECT_EQ(*a->get(), 5);
  ASSERT_TRUE(a->stop());
}

TEST(StackWorker, PushPopAndEmptyPopIsAnErrorReply) {
  auto w = rt::spawn_exec({t::bin_path("stack_worker")},
                          {.spawn = {.monitor = true, .name = "stack"}, .wait_ready = true});
  ASSERT_TRUE(w) << w.error().message();
  for (const char* v : {"a", "b", "c"}) {
    ASSERT_TRUE(
        rt::cast(std::string("stack"), std::make_tuple(std::string("push"), std::string(v))));
  }
  using reply = std::tuple<std::string, std::string>;
  for (const char* v : {"c", "b", "a"}) {
    auto r =
        rt::call<reply>(std::string("stack"), std::make_tuple(std::string("pop")), t::scaled(5s));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(*r, reply("ok", v));
  }
  auto empty = rt::call<reply>(std::string("stack"), std::make_tuple(std::string("pop")));
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, reply("error", "empty"));
  // Still serving after the error.
  ASSERT_TRUE(
      rt::cast(std::string("stack"), std::make_tuple(std::string("push"), std::string("z"))));
  EXPECT_EQ(*rt::call<reply>(std::string("stack"), std::make_tuple(std::string("pop"))),
            reply("ok", "z"));
  ASSERT_EQ(t::sh("kill -TERM " + std::to_string(w->pid)), 0);
  auto down = rt::receive_ref(w->monitor_ref, long_wait());
  ASSERT_TRUE(down);
  EXPECT_EQ(down->reason(), exit_reason::normal());
}

TEST(GenServer, ManyRequestsInFlightToSeveralServers) {
  pid_t a = start_counter();
  pid_t b = start_counter();
  ASSERT_TRUE(rt::cast(b, std::string("inc")));
  std::vector<rt::request_id> ids;
  for (int i = 0; i < 10; ++i) {
    auto id = rt::send_request(i % 2 == 0 ? a : b, rt::pack(std::string("get")));
    ASSERT_TRUE(id);
    ids.push_back(*id);
  }
  // Collect in arrival order, matching each reply to its request.
  int answered = 0;
  while (answered < 10) {
    auto m = rt::receive(
        [&](const rt::message& x) {
          return std::any_of(ids.begin(), ids.end(),
                             [&](const auto& id) { return rt::answers(x, id); });
        },
        long_wait());
    ASSERT_TRUE(m);
    auto it =
        std::find_if(ids.begin(), ids.end(), [&](const auto& id) { return rt::answers(*m, id); });
    auto r = rt::take_response(std::move(*m), *it);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r->as<int>(), it->server == a ? 0 : 1);
    ids.erase(it);
    ++answered;
  }
  // A request to a server that dies is answered by its DOWN.
  auto id = rt::send_request(a, rt::pack(std::string("die")));
  ASSERT_TRUE(id);
  exit_reason why;
  auto r = rt::receive_response(*id, long_wait(), &why);
  EXPECT_EQ(r.error(), errc::crashed);
  EXPECT_EQ(why, exit_reason::code(9));
  ASSERT_TRUE(rt::stop_server(b, t::scaled(5s)));
}

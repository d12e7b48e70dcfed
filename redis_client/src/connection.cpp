#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <utility>
#include <vector>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/redis_client/connection.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::redis_client {

using core::clock;
using std::chrono::milliseconds;

const char* to_string(connection_state s) noexcept {
  switch (s) {
    case connection_state::disconnected:
      return "disconnected";
    case connection_state::connecting:
      return "connecting";
    case connection_state::connected:
      return "connected";
  }
  return "unknown";
}

milliseconds backoff_delay(milliseconds base, milliseconds cap, unsigned attempt, double jitter,
                           double unit) noexcept {
  if (base.count() <= 0) {
    return milliseconds(0);
  }
  // Double until the cap; stop shifting early so the product cannot overflow.
  auto d = static_cast<long double>(base.count());
  for (unsigned i = 0; i < attempt && d < static_cast<long double>(cap.count()); ++i) {
    d *= 2;
  }
  d = std::min(d, static_cast<long double>(cap.count()));
  jitter = std::clamp(jitter, 0.0, 1.0);
  unit = std::clamp(unit, 0.0, 1.0);
  d -= d * static_cast<long double>(jitter) * static_cast<long double>(unit);
  return milliseconds(static_cast<milliseconds::rep>(std::llround(d)));
}

namespace detail {

// The state behind a connection handle. Freed by itself in the close
// callback of its last timer, after the handle is gone: events already
// queued on the loop may still reach it, and it is never freed inside one of
// its own callbacks.
class connection_core {
 public:
  connection_core(uv_loop_t* loop, connection::options opts, connection::state_callback cb)
      : loop_(loop), opts_(std::move(opts)), on_state_(std::move(cb)) {
    std::random_device rd;
    rng_.seed(opts_.seed != 0 ? opts_.seed : (static_cast<std::uint64_t>(rd()) << 32) ^ rd());
    for (uv_timer_t* t : {&retry_timer_, &queue_timer_, &defer_timer_}) {
      uv_timer_init(loop_, t);
      t->data = this;
    }
  }
  connection_core(const connection_core&) = delete;
  connection_core& operator=(const connection_core&) = delete;
  connection_core(connection_core&&) = delete;
  connection_core& operator=(connection_core&&) = delete;
  ~connection_core() = default;

  void start();
  void stop();
  void command(command_args& args, milliseconds timeout, reply_callback cb);
  void release_handle() noexcept;

  [[nodiscard]] connection_state state() const noexcept { return state_; }
  [[nodiscard]] std::size_t queued() const noexcept { return queue_.size(); }
  [[nodiscard]] std::size_t in_flight() const noexcept { return client_.in_flight(); }
  [[nodiscard]] std::uint64_t attempts() const noexcept { return attempts_; }
  [[nodiscard]] std::uint64_t connects() const noexcept { return connects_; }
  [[nodiscard]] milliseconds default_timeout() const noexcept { return opts_.request_timeout; }

 private:
  struct queued_request {
    std::vector<std::string> argv;  // owned: the caller's bytes are gone by the time it is sent
    clock::time_point deadline;
    reply_callback cb;
  };

  // Events.
  void begin_connect();
  void on_client_connect(std::uint64_t gen, std::error_code ec);
  void on_handshake(std::uint64_t gen, const std::string& what, bool last, reply_result r);
  void on_client_down(std::uint64_t gen, std::error_code ec);
  static void on_retry_timer(uv_timer_t* t);
  static void on_queue_timer(uv_timer_t* t);
  static void on_defer_timer(uv_timer_t* t);

  void enter_connected();
  void enter_disconnected(std::error_code why, bool retry);
  // Logs and reports a change of state_ (already made) from `from`.
  void report(connection_state from, std::error_code why, milliseconds retry_in);
  void drop_client();
  void flush_queue();
  void arm_queue_timer();
  void fail_queue(std::error_code ec, bool now);
  void defer_answer(reply_callback cb, reply_result r);
  void run_deferred();

  uv_loop_t* loop_;
  connection::options opts_;
  connection::state_callback on_state_;
  std::mt19937_64 rng_;

  connection_state state_ = connection_state::disconnected;
  bool started_ = false;
  bool handle_alive_ = true;
  bool finishing_ = false;
  std::uint64_t gen_ = 0;  // numbers connect attempts; stale events carry an old one
  unsigned failures_ = 0;  // consecutive failed attempts (backoff exponent)
  std::uint64_t attempts_ = 0;
  std::uint64_t connects_ = 0;
  clock::time_point connect_deadline_{};
  std::error_code last_reason_;
  async_client client_;

  std::deque<queued_request> queue_;
  std::deque<std::pair<reply_callback, reply_result>> deferred_;
  bool defer_armed_ = false;

  uv_timer_t retry_timer_{};
  uv_timer_t queue_timer_{};
  uv_timer_t defer_timer_{};
};

void connection_core::report(connection_state from, std::error_code why, milliseconds retry_in) {
  connection_state to = state_;
  const std::string where = opts_.where.to_string();
  if (to == connection_state::disconnected && why) {
    std::string err = why.message();
    if (from == connection_state::connected) {
      core::log_warn("{} {}: connection lost: {}; {}", opts_.name, where, err,
                     started_ ? fmt::format("reconnecting in {} ms", retry_in.count())
                              : std::string("stopped"));
    } else {
      core::log_warn(
          "{} {}: unable to connect: {}; {}", opts_.name, where, err,
          started_ ? fmt::format("retrying in {} ms (attempt {})", retry_in.count(), failures_)
                   : std::string("stopped"));
    }
  } else {
    core::log_info("{} {}: {} -> {}", opts_.name, where, to_string(from), to_string(to));
  }
  if (on_state_ && handle_alive_) {
    // A copy: the callback may destroy the connection, which clears on_state_.
    auto cb = on_state_;
    cb(connection::transition{from, to, why, retry_in, failures_});
  }
}

void connection_core::start() {
  if (started_) {
    return;
  }
  started_ = true;
  if (state_ == connection_state::disconnected) {
    uv_timer_stop(&retry_timer_);
    begin_connect();
  }
}

void connection_core::begin_connect() {
  std::uint64_t gen = ++gen_;
  ++attempts_;
  connect_deadline_ = clock::now() + opts_.connect_timeout;
  async_client::options co;
  co.connect_timeout = opts_.connect_timeout;
  co.request_timeout = opts_.request_timeout;
  co.max_in_flight = opts_.max_in_flight;
  async_client::handlers h;
  h.on_connect = [this, gen](std::error_code ec) { on_client_connect(gen, ec); };
  h.on_disconnect = [this, gen](std::error_code ec) { on_client_down(gen, ec); };
  connection_state from = state_;
  state_ = connection_state::connecting;
  client_ = async_client::connect(loop_, opts_.where, co, std::move(h));
  report(from, {}, milliseconds(0));
}

void connection_core::on_client_connect(std::uint64_t gen, std::error_code ec) {
  if (gen != gen_ || state_ != connection_state::connecting) {
    return;
  }
  if (ec) {
    enter_disconnected(ec, true);
    return;
  }
  // The handshake, pipelined: AUTH, SELECT, PING as configured. Every reply
  // must be a success; the last one completes the connect.
  std::vector<std::vector<std::string>> steps;
  if (!opts_.password.empty()) {
    steps.push_back({"AUTH", opts_.password});
  }
  if (opts_.database != 0) {
    steps.push_back({"SELECT", std::to_string(opts_.database)});
  }
  if (opts_.ping_on_connect) {
    steps.push_back({"PING"});
  }
  if (steps.empty()) {
    enter_connected();
    return;
  }
  auto left = std::chrono::ceil<milliseconds>(connect_deadline_ - clock::now());
  if (opts_.connect_timeout.count() <= 0) {
    left = milliseconds(0);  // no bound asked for
  } else if (left.count() < 1) {
    left = milliseconds(1);
  }
  for (std::size_t i = 0; i < steps.size(); ++i) {
    bool last = i + 1 == steps.size();
    std::string what = steps[i][0];
    client_.command(steps[i], left, [this, gen, last, what](reply_result r) {
      on_handshake(gen, what, last, std::move(r));
    });
  }
}

void connection_core::on_handshake(std::uint64_t gen, const std::string& what, bool last,
                                   reply_result r) {
  if (gen != gen_ || state_ != connection_state::connecting) {
    return;
  }
  if (!r) {
    enter_disconnected(r.error(), true);
  } else if (r->is_error()) {
    // A refused AUTH or SELECT will not get better by itself, but the
    // server's configuration may change: keep retrying, with backoff.
    core::log_warn("{} {}: {} answered {}", opts_.name, opts_.where.to_string(), what, r->str);
    enter_disconnected(core::errc::protocol, true);
  } else if (last) {
    enter_connected();
  }
}

void connection_core::on_client_down(std::uint64_t gen, std::error_code ec) {
  if (gen != gen_ || state_ != connection_state::connected) {
    return;
  }
  // A connection that was up counts as a success: the first retry waits
  // only the base delay.
  failures_ = 0;
  enter_disconnected(ec ? ec : std::error_code(core::errc::closed), true);
}

void connection_core::enter_connected() {
  failures_ = 0;
  ++connects_;
  flush_queue();
  connection_state from = state_;
  state_ = connection_state::connected;
  report(from, {}, milliseconds(0));
}

void connection_core::drop_client() {
  ++gen_;  // whatever the old client still reports is stale now
  client_.close();
}

void connection_core::enter_disconnected(std::error_code why, bool retry) {
  // The state changes before the old client goes: closing it answers its
  // requests, and a callback sending a new request must find the connection
  // disconnected (queued or failed fast), not a closed client.
  connection_state from = state_;
  state_ = connection_state::disconnected;
  drop_client();
  milliseconds delay(0);
  if (retry && started_) {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    delay = backoff_delay(opts_.backoff_base, opts_.backoff_cap, failures_, opts_.backoff_jitter,
                          unit(rng_));
    ++failures_;
    uv_timer_start(&retry_timer_, on_retry_timer, static_cast<std::uint64_t>(delay.count()), 0);
  }
  report(from, why, delay);
}

void connection_core::on_retry_timer(uv_timer_t* t) {
  auto* self = static_cast<connection_core*>(t->data);
  if (self->started_ && self->state_ == connection_state::disconnected) {
    self->begin_connect();
  }
}

void connection_core::stop() {
  if (!started_) {
    return;
  }
  started_ = false;
  uv_timer_stop(&retry_timer_);
  fail_queue(core::errc::shutting_down, false);
  if (state_ != connection_state::disconnected) {
    enter_disconnected(core::errc::shutting_down, false);
  }
}

void connection_core::command(command_args& args, milliseconds timeout, reply_callback cb) {
  if (state_ == connection_state::connected && client_.valid()) {
    client_.command(args, timeout, std::move(cb));
    return;
  }
  if (!opts_.queue_while_disconnected || !started_) {
    defer_answer(std::move(cb), core::errc::disconnected);
    return;
  }
  if (queue_.size() >= opts_.max_queue) {
    defer_answer(std::move(cb), core::errc::busy);
    return;
  }
  queued_request q;
  q.argv.reserve(static_cast<std::size_t>(args.argc()));
  for (int i = 0; i < args.argc(); ++i) {
    q.argv.emplace_back(args.argv()[i], args.lens()[i]);
  }
  q.deadline = timeout.count() > 0 ? clock::now() + timeout : clock::time_point::max();
  q.cb = std::move(cb);
  queue_.push_back(std::move(q));
  if (queue_.back().deadline != clock::time_point::max()) {
    arm_queue_timer();
  }
}

void connection_core::flush_queue() {
  uv_timer_stop(&queue_timer_);
  auto now = clock::now();
  std::deque<queued_request> batch;
  batch.swap(queue_);
  for (auto& q : batch) {
    if (q.deadline <= now) {
      defer_answer(std::move(q.cb), core::errc::timeout);
      continue;
    }
    milliseconds left(0);
    if (q.deadline != clock::time_point::max()) {
      left = std::max(milliseconds(1), std::chrono::ceil<milliseconds>(q.deadline - now));
    }
    client_.command(q.argv, left, std::move(q.cb));
  }
}

void connection_core::arm_queue_timer() {
  auto earliest = clock::time_point::max();
  for (const auto& q : queue_) {
    earliest = std::min(earliest, q.deadline);
  }
  if (earliest == clock::time_point::max() || finishing_) {
    uv_timer_stop(&queue_timer_);
    return;
  }
  uv_update_time(loop_);
  uv_timer_start(&queue_timer_, on_queue_timer, core::ceil_ms(earliest - clock::now()), 0);
}

void connection_core::on_queue_timer(uv_timer_t* t) {
  auto* self = static_cast<connection_core*>(t->data);
  auto now = clock::now();
  std::vector<reply_callback> expired;
  for (auto it = self->queue_.begin(); it != self->queue_.end();) {
    if (it->deadline <= now) {
      expired.push_back(std::move(it->cb));
      it = self->queue_.erase(it);
    } else {
      ++it;
    }
  }
  self->arm_queue_timer();
  for (auto& cb : expired) {
    cb(core::errc::timeout);
  }
}

void connection_core::fail_queue(std::error_code ec, bool now) {
  std::deque<queued_request> batch;
  batch.swap(queue_);
  uv_timer_stop(&queue_timer_);
  for (auto& q : batch) {
    if (now) {
      q.cb(ec);
    } else {
      defer_answer(std::move(q.cb), ec);
    }
  }
}

void connection_core::defer_answer(reply_callback cb, reply_result r) {
  deferred_.emplace_back(std::move(cb), std::move(r));
  if (!defer_armed_ && !finishing_) {
    defer_armed_ = true;
    uv_timer_start(&defer_timer_, on_defer_timer, 0, 0);
  }
}

void connection_core::run_deferred() {
  for (std::size_t n = deferred_.size(); n > 0 && !deferred_.empty(); --n) {
    auto item = std::move(deferred_.front());
    deferred_.pop_front();
    item.first(std::move(item.second));
  }
}

void connection_core::on_defer_timer(uv_timer_t* t) {
  auto* self = static_cast<connection_core*>(t->data);
  self->defer_armed_ = false;
  self->run_deferred();
  if (!self->deferred_.empty() && !self->defer_armed_ && !self->finishing_) {
    self->defer_armed_ = true;
    uv_timer_start(&self->defer_timer_, on_defer_timer, 0, 0);
  }
}

void connection_core::release_handle() noexcept {
  handle_alive_ = false;
  on_state_ = nullptr;
  started_ = false;
  ++gen_;
  // Everything owed is answered before the destructor returns.
  fail_queue(core::errc::shutting_down, true);
  while (!deferred_.empty()) {
    run_deferred();
  }
  client_.close();
  while (!deferred_.empty()) {
    run_deferred();
  }
  finishing_ = true;
  uv::close_all(
      {uv::as_handle(&retry_timer_), uv::as_handle(&queue_timer_), uv::as_handle(&defer_timer_)},
      // NOLINTNEXTLINE(cppcoreguidelines-owning-memory): the last close callback owns it
      [this] { delete this; });
}

}  // namespace detail

connection::connection(uv_loop_t* loop, options opts, state_callback on_state)
    : c_(new detail::connection_core(loop, std::move(opts), std::move(on_state))) {}  // NOLINT

connection::connection(connection&& other) noexcept : c_(std::exchange(other.c_, nullptr)) {}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (c_ != nullptr) {
      std::exchange(c_, nullptr)->release_handle();
    }
    c_ = std::exchange(other.c_, nullptr);
  }
  return *this;
}

connection::~connection() {
  if (c_ != nullptr) {
    std::exchange(c_, nullptr)->release_handle();
  }
}

void connection::start() {
  if (c_ != nullptr) {
    c_->start();
  }
}

void connection::stop() {
  if (c_ != nullptr) {
    c_->stop();
  }
}

void connection::command(command_args args, reply_callback cb) {
  command(std::move(args), c_ != nullptr ? c_->default_timeout() : milliseconds(0), std::move(cb));
}

void connection::command(command_args args, milliseconds timeout, reply_callback cb) {
  if (c_ == nullptr) {
    cb(core::errc::disconnected);  // a moved-from handle has no loop to answer from
    return;
  }
  c_->command(args, timeout, std::move(cb));
}

connection_state connection::state() const noexcept {
  return c_ != nullptr ? c_->state() : connection_state::disconnected;
}
std::size_t connection::queued() const noexcept {
  return c_ != nullptr ? c_->queued() : 0;
}
std::size_t connection::in_flight() const noexcept {
  return c_ != nullptr ? c_->in_flight() : 0;
}
std::uint64_t connection::attempts() const noexcept {
  return c_ != nullptr ? c_->attempts() : 0;
}
std::uint64_t connection::connects() const noexcept {
  return c_ != nullptr ? c_->connects() : 0;
}

}  // namespace otpd::redis_client

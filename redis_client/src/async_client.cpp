#include <cerrno>
#include <deque>
#include <functional>
#include <queue>
#include <utility>
#include <vector>

#include "hiredis_util.hpp"
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <otpd/core/clock.hpp>
#include <otpd/redis_client/async_client.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::redis_client {

namespace detail {

using core::clock;
using std::chrono::milliseconds;

// The state behind an async_client handle. It owns the hiredis context and
// four uv handles, and frees itself (in their close callbacks) once the
// handle is gone AND hiredis has released the context: hiredis may still call
// into it after the handle is destroyed (pending callbacks with a NULL reply,
// the disconnect callback), and memory is never freed inside a callback that
// is still running.
class async_session {
 public:
  async_session(uv_loop_t* loop, const async_client::options& opts, async_client::handlers h)
      : loop_(loop), opts_(opts), h_(std::move(h)) {
    for (uv_timer_t* t : {&deadline_timer_, &connect_timer_, &defer_timer_}) {
      uv_timer_init(loop_, t);
      t->data = this;
    }
    uv_prepare_init(loop_, &flush_);
    flush_.data = this;
  }
  async_session(const async_session&) = delete;
  async_session& operator=(const async_session&) = delete;
  async_session(async_session&&) = delete;
  async_session& operator=(async_session&&) = delete;
  ~async_session() = default;

  void start(const endpoint& where);
  void command(command_args& args, milliseconds timeout, reply_callback cb);
  void release_handle() noexcept;

  [[nodiscard]] bool connected() const noexcept { return phase_ == phase::connected; }
  [[nodiscard]] std::size_t in_flight() const noexcept { return live_; }
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }
  [[nodiscard]] milliseconds default_timeout() const noexcept { return opts_.request_timeout; }

 private:
  enum class phase { connecting, connected, dead };
  struct request {
    reply_callback cb;  // empty once answered (by its deadline)
  };

  // hiredis callbacks (C linkage shape, static).
  static void on_reply(redisAsyncContext* ac, void* r, void* privdata);
  static void on_connected(const redisAsyncContext* ac, int status);
  static void on_disconnected(const redisAsyncContext* ac, int status);
  // Event hooks installed over the libuv adapter's (see attach()).
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void add_read(void* privdata);
  static void del_read(void* privdata);
  static void add_write(void* privdata);
  static void del_write(void* privdata);
  static void cleanup(void* privdata);
  // Timers.
  static void on_deadline_timer(uv_timer_t* t);
  static void on_connect_timer(uv_timer_t* t);
  static void on_defer_timer(uv_timer_t* t);
  static void on_flush(uv_prepare_t* p);

  bool attach();
  void fail_start(std::error_code ec, std::string message);
  void defer(std::function<void()> fn);
  void defer_answer(reply_callback cb, reply_result r);
  void defer_handler(bool connect, std::error_code ec);
  void run_deferred();
  void arm_deadline_timer();
  void arm_connect_timer();
  void drop_answered_deadlines();
  void context_gone();
  void maybe_finish();
  [[nodiscard]] reply_result failure() const {
    return fail_code_ ? reply_result(fail_code_) : reply_result(core::errc::disconnected);
  }

  uv_loop_t* loop_;
  async_client::options opts_;
  async_client::handlers h_;
  redisAsyncContext* ac_ = nullptr;  // null once hiredis has released it
  phase phase_ = phase::connecting;
  std::error_code fail_code_;  // what a NULL reply means when we caused it
  std::string last_error_;
  bool handle_alive_ = true;
  bool finishing_ = false;
  bool defer_armed_ = false;
  bool was_connected_ = false;
  bool flush_armed_ = false;

  // Requests in the order hiredis will answer them; front_seq_ numbers the
  // front. seq - front_seq_ indexes a request while hiredis still holds it.
  std::deque<request> inflight_;
  std::uint64_t front_seq_ = 0;
  std::uint64_t next_seq_ = 0;
  std::size_t live_ = 0;  // requests not answered yet
  // Deadlines (min-heap of {when, seq}); entries of answered requests are
  // dropped lazily, from the top.
  using deadline_entry = std::pair<clock::time_point, std::uint64_t>;
  std::priority_queue<deadline_entry, std::vector<deadline_entry>, std::greater<>> deadlines_;
  clock::time_point timer_at_ = clock::time_point::max();
  clock::time_point connect_deadline_{};

  std::deque<std::function<void()>> deferred_;

  uv_timer_t deadline_timer_{};
  uv_timer_t connect_timer_{};
  uv_timer_t defer_timer_{};
  // Writes the commands of this loop turn right before the loop polls,
  // instead of one more poll turn for the writable event hiredis asks for.
  uv_prepare_t flush_{};
};

void async_session::start(const endpoint& where) {
  errno = 0;
  ac_ = where.is_unix() ? redisAsyncConnectUnix(where.unix_path.c_str())
                        : redisAsyncConnect(where.host.c_str(), where.port);
  int saved = errno;
  if (ac_ == nullptr) {
    fail_start(std::make_error_code(std::errc::not_enough_memory), "out of memory");
    return;
  }
  if (ac_->err != 0) {
    // Refused at once (a Unix socket path with no listener, a closed
    // loopback port): nothing was attached, so no callback will come.
    std::error_code ec = error_from_hiredis(ac_->err, saved, ac_->errstr);
    std::string msg = ac_->errstr;
    redisAsyncFree(ac_);
    ac_ = nullptr;
    fail_start(ec, std::move(msg));
    return;
  }
  set_cloexec(ac_->c.fd);
  ac_->data = this;
  if (!attach()) {
    redisAsyncFree(ac_);
    ac_ = nullptr;
    fail_start(std::make_error_code(std::errc::not_enough_memory), "unable to attach to the loop");
    return;
  }
  redisAsyncSetDisconnectCallback(ac_, on_disconnected);
  // Also asks for the first write event, which completes the connect.
  redisAsyncSetConnectCallback(ac_, on_connected);
  if (opts_.connect_timeout.count() > 0) {
    connect_deadline_ = clock::now() + opts_.connect_timeout;
    arm_connect_timer();
  }
}

bool async_session::attach() {
  if (redisLibuvAttach(ac_, loop_) != REDIS_OK) {
    return false;
  }
  // hiredis' libuv adapter ignores a poll error (its callback returns when
  // status != 0) and libuv has stopped the handle by then: a refused
  // connect or a reset socket would hang forever. Keep the adapter's state
  // and cleanup, but poll with a callback that hands errors to hiredis.
  ac_->ev.addRead = add_read;
  ac_->ev.delRead = del_read;
  ac_->ev.addWrite = add_write;
  ac_->ev.delWrite = del_write;
  ac_->ev.cleanup = cleanup;
  return true;
}

void async_session::fail_start(std::error_code ec, std::string message) {
  phase_ = phase::dead;
  last_error_ = std::move(message);
  defer_handler(true, ec);
}

void async_session::on_poll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<redisLibuvEvents*>(handle->data);
  if (p->context == nullptr) {
    return;
  }
  if (status != 0) {
    // A read (or hiredis' connect check) now reports the socket error, and
    // hiredis disconnects, answering every pending callback.
    redisAsyncHandleRead(p->context);
    return;
  }
  if ((events & UV_READABLE) != 0) {
    redisAsyncHandleRead(p->context);
  }
  // The read may have freed the context (the adapter's cleanup clears it).
  if (p->context != nullptr && (events & UV_WRITABLE) != 0) {
    redisAsyncHandleWrite(p->context);
  }
}

void async_session::add_read(void* privdata) {
  auto* p = static_cast<redisLibuvEvents*>(privdata);
  p->events |= UV_READABLE;
  uv_poll_start(&p->handle, p->events, on_poll);
}

void async_session::del_read(void* privdata) {
  auto* p = static_cast<redisLibuvEvents*>(privdata);
  p->events &= ~UV_READABLE;
  if (p->events != 0) {
    uv_poll_start(&p->handle, p->events, on_poll);
  } else {
    uv_poll_stop(&p->handle);
  }
}

void async_session::add_write(void* privdata) {
  auto* p = static_cast<redisLibuvEvents*>(privdata);
  p->events |= UV_WRITABLE;
  uv_poll_start(&p->handle, p->events, on_poll);
}

void async_session::del_write(void* privdata) {
  auto* p = static_cast<redisLibuvEvents*>(privdata);
  p->events &= ~UV_WRITABLE;
  if (p->events != 0) {
    uv_poll_start(&p->handle, p->events, on_poll);
  } else {
    uv_poll_stop(&p->handle);
  }
}

void async_session::cleanup(void* privdata) {
  // Called by hiredis while it frees the context (before the disconnect
  // callback, before the memory goes): the context is still readable.
  auto* p = static_cast<redisLibuvEvents*>(privdata);
  auto* self = p->context != nullptr ? static_cast<async_session*>(p->context->data) : nullptr;
  redisLibuvCleanup(privdata);  // closes the poll handle; its memory goes in the close callback
  if (self != nullptr) {
    self->context_gone();
  }
}

void async_session::on_connected(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<async_session*>(ac->data);
  uv_timer_stop(&self->connect_timer_);
  if (status == REDIS_OK) {
    self->phase_ = phase::connected;
    self->was_connected_ = true;
    // Watch for reads from now on, so a server that closes an idle
    // connection is noticed at once, not at the next command.
    add_read(ac->ev.data);
    self->defer_handler(true, {});
    return;
  }
  // hiredis frees the context right after this returns; the pending
  // requests get NULL replies from it.
  int saved = errno;
  self->phase_ = phase::dead;
  self->last_error_ = ac->c.errstr;
  self->defer_handler(true, error_from_hiredis(ac->c.err, saved, ac->c.errstr));
}

void async_session::on_disconnected(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<async_session*>(ac->data);
  // Not phase_: the NULL replies that precede this callback already marked
  // the session dead.
  bool was_connected = self->was_connected_;
  self->phase_ = phase::dead;
  if (self->fail_code_) {
    return;  // we closed it (destroyed, or connect timeout): nobody to tell
  }
  std::error_code ec = core::errc::closed;
  if (status != REDIS_OK) {
    self->last_error_ = ac->errstr != nullptr ? ac->errstr : "connection lost";
    ec = ac->err == REDIS_ERR_EOF ? std::error_code(core::errc::closed)
                                  : std::error_code(core::errc::disconnected);
  }
  if (was_connected) {
    self->defer_handler(false, ec);
  }
}

void async_session::on_reply(redisAsyncContext* /*ac*/, void* r, void* privdata) {
  auto* self = static_cast<async_session*>(privdata);
  request req = std::move(self->inflight_.front());
  self->inflight_.pop_front();
  ++self->front_seq_;
  if (r == nullptr) {
    // hiredis is dropping the connection: no request can succeed any more.
    self->phase_ = phase::dead;
  }
  self->drop_answered_deadlines();
  if (!req.cb) {
    return;  // answered already by its deadline; this is the late reply
  }
  --self->live_;
  if (r != nullptr) {
    req.cb(from_hiredis(static_cast<redisReply*>(r)));
  } else {
    req.cb(self->failure());
  }
}

void async_session::command(command_args& args, milliseconds timeout, reply_callback cb) {
  if (phase_ == phase::dead || ac_ == nullptr) {
    defer_answer(std::move(cb), core::errc::disconnected);
    return;
  }
  if (args.empty()) {
    defer_answer(std::move(cb), core::errc::invalid_argument);
    return;
  }
  if (opts_.max_in_flight != 0 && inflight_.size() >= opts_.max_in_flight) {
    defer_answer(std::move(cb), core::errc::busy);
    return;
  }
  if (redisAsyncCommandArgv(ac_, on_reply, this, args.argc(), args.argv(), args.lens()) !=
      REDIS_OK) {
    defer_answer(std::move(cb), core::errc::disconnected);
    return;
  }
  std::uint64_t seq = next_seq_++;
  inflight_.push_back(request{std::move(cb)});
  ++live_;
  if (phase_ == phase::connected && !flush_armed_) {
    flush_armed_ = true;
    uv_prepare_start(&flush_, on_flush);
  }
  if (timeout.count() > 0) {
    auto when = clock::now() + timeout;
    deadlines_.emplace(when, seq);
    if (when < timer_at_) {
      arm_deadline_timer();
    }
  }
}

void async_session::on_flush(uv_prepare_t* p) {
  auto* self = static_cast<async_session*>(p->data);
  uv_prepare_stop(p);
  self->flush_armed_ = false;
  if (self->ac_ != nullptr && self->phase_ == phase::connected) {
    // From the loop, not from command(): a failed write makes hiredis
    // disconnect and answer callbacks, which must never run inside command().
    redisAsyncHandleWrite(self->ac_);
  }
}

void async_session::drop_answered_deadlines() {
  while (!deadlines_.empty()) {
    std::uint64_t seq = deadlines_.top().second;
    if (seq >= front_seq_ && inflight_[seq - front_seq_].cb) {
      break;  // still waiting
    }
    deadlines_.pop();
  }
  if (deadlines_.empty() && timer_at_ != clock::time_point::max()) {
    uv_timer_stop(&deadline_timer_);
    timer_at_ = clock::time_point::max();
  }
}

void async_session::arm_deadline_timer() {
  if (deadlines_.empty() || finishing_) {
    return;
  }
  timer_at_ = deadlines_.top().first;
  // The loop's cached time may lag; refresh it so the timer is not early.
  uv_update_time(loop_);
  uv_timer_start(&deadline_timer_, on_deadline_timer, core::ceil_ms(timer_at_ - clock::now()), 0);
}

void async_session::on_deadline_timer(uv_timer_t* t) {
  auto* self = static_cast<async_session*>(t->data);
  self->timer_at_ = clock::time_point::max();
  auto now = clock::now();
  std::vector<reply_callback> expired;
  while (!self->deadlines_.empty() && self->deadlines_.top().first <= now) {
    std::uint64_t seq = self->deadlines_.top().second;
    self->deadlines_.pop();
    if (seq >= self->front_seq_) {
      request& req = self->inflight_[seq - self->front_seq_];
      if (req.cb) {
        expired.push_back(std::move(req.cb));
        req.cb = nullptr;
        --self->live_;
      }
    }
  }
  self->drop_answered_deadlines();
  self->arm_deadline_timer();
  // Callbacks last: one may destroy the client; the session stays valid
  // (it is freed only from a close callback) and owes nothing more here.
  for (auto& cb : expired) {
    cb(core::errc::timeout);
  }
}

void async_session::arm_connect_timer() {
  uv_update_time(loop_);
  uv_timer_start(&connect_timer_, on_connect_timer, core::ceil_ms(connect_deadline_ - clock::now()),
                 0);
}

void async_session::on_connect_timer(uv_timer_t* t) {
  auto* self = static_cast<async_session*>(t->data);
  if (self->phase_ != phase::connecting || self->ac_ == nullptr) {
    return;
  }
  if (clock::now() < self->connect_deadline_) {
    // libuv's clock is coarse (milliseconds, cached per loop turn): early.
    self->arm_connect_timer();
    return;
  }
  self->phase_ = phase::dead;
  self->fail_code_ = core::errc::timeout;
  self->last_error_ = "connect timed out";
  self->defer_handler(true, core::errc::timeout);
  // Not inside a hiredis callback: this frees the context now, answering
  // pending requests with NULL replies (errc::timeout, from fail_code_).
  redisAsyncFree(self->ac_);
}

void async_session::defer(std::function<void()> fn) {
  if (finishing_) {
    return;
  }
  deferred_.push_back(std::move(fn));
  if (!defer_armed_) {
    defer_armed_ = true;
    uv_timer_start(&defer_timer_, on_defer_timer, 0, 0);
  }
}

void async_session::defer_answer(reply_callback cb, reply_result r) {
  if (!handle_alive_) {
    return;
  }
  defer([cb = std::move(cb), r = std::move(r)]() mutable { cb(std::move(r)); });
}

void async_session::defer_handler(bool connect, std::error_code ec) {
  defer([this, connect, ec] {
    if (!handle_alive_) {
      return;
    }
    // Moved out before the call: the handler may destroy the client, which
    // clears h_, and a std::function must not be destroyed while it runs.
    auto fn = std::move(connect ? h_.on_connect : h_.on_disconnect);
    if (fn) {
      fn(ec);
    }
  });
}

void async_session::run_deferred() {
  // One at a time from the member queue, so that a callback destroying the
  // client lets release_handle() deliver the rest before it returns. Work
  // deferred during this pass waits for the next one.
  for (std::size_t n = deferred_.size(); n > 0 && !deferred_.empty(); --n) {
    auto fn = std::move(deferred_.front());
    deferred_.pop_front();
    fn();
  }
}

void async_session::on_defer_timer(uv_timer_t* t) {
  auto* self = static_cast<async_session*>(t->data);
  self->defer_armed_ = false;
  self->run_deferred();
  if (!self->deferred_.empty() && !self->defer_armed_ && !self->finishing_) {
    self->defer_armed_ = true;
    uv_timer_start(&self->defer_timer_, on_defer_timer, 0, 0);
  }
}

void async_session::context_gone() {
  ac_ = nullptr;
  phase_ = phase::dead;
  uv_timer_stop(&connect_timer_);
  maybe_finish();
}

void async_session::release_handle() noexcept {
  handle_alive_ = false;
  // No user code may run after the destructor returns: deliver what is owed now.
  while (!deferred_.empty()) {
    run_deferred();
  }
  std::vector<reply_callback> owed;
  for (auto& req : inflight_) {
    if (req.cb) {
      owed.push_back(std::move(req.cb));
      req.cb = nullptr;
    }
  }
  live_ = 0;
  fail_code_ = core::errc::shutting_down;
  for (auto& cb : owed) {
    cb(core::errc::shutting_down);
  }
  h_ = {};
  if (ac_ != nullptr) {
    // Inside one of hiredis' reply callbacks this only sets a flag and
    // hiredis frees the context after the callback returns.
    redisAsyncFree(ac_);
  }
  maybe_finish();
}

void async_session::maybe_finish() {
  if (handle_alive_ || ac_ != nullptr || finishing_) {
    return;
  }
  finishing_ = true;
  deferred_.clear();
  uv::close_all({uv::as_handle(&deadline_timer_), uv::as_handle(&connect_timer_),
                 uv::as_handle(&defer_timer_), uv::as_handle(&flush_)},
                // NOLINTNEXTLINE(cppcoreguidelines-owning-memory): the last close callback owns it
                [this] { delete this; });
}

}  // namespace detail

async_client async_client::connect(uv_loop_t* loop, const endpoint& where, const options& opts,
                                   handlers h) {
  detail::ignore_sigpipe_once();
  async_client c;
  c.s_ = new detail::async_session(loop, opts, std::move(h));  // NOLINT: freed by itself
  c.s_->start(where);
  return c;
}

async_client::async_client(async_client&& other) noexcept : s_(std::exchange(other.s_, nullptr)) {}

async_client& async_client::operator=(async_client&& other) noexcept {
  if (this != &other) {
    close();
    s_ = std::exchange(other.s_, nullptr);
  }
  return *this;
}

async_client::~async_client() {
  close();
}

void async_client::close() noexcept {
  if (s_ != nullptr) {
    std::exchange(s_, nullptr)->release_handle();
  }
}

void async_client::command(command_args args, reply_callback cb) {
  command(std::move(args), s_ != nullptr ? s_->default_timeout() : std::chrono::milliseconds(0),
          std::move(cb));
}

void async_client::command(command_args args, std::chrono::milliseconds timeout,
                           reply_callback cb) {
  // A default-constructed (or closed) client has no loop to answer from:
  // answering here is the only way to answer at all.
  if (s_ == nullptr) {
    cb(core::errc::disconnected);
    return;
  }
  s_->command(args, timeout, std::move(cb));
}

bool async_client::connected() const noexcept {
  return s_ != nullptr && s_->connected();
}

std::size_t async_client::in_flight() const noexcept {
  return s_ != nullptr ? s_->in_flight() : 0;
}

std::string async_client::last_error() const {
  return s_ != nullptr ? s_->last_error() : "";
}

}  // namespace otpd::redis_client

#include <uv.h>

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <otpd/core/log.hpp>
#include <otpd/redis_client/connection.hpp>
#include <otpd/redis_pool/codec.hpp>
#include <otpd/redis_pool/facts.hpp>
#include <otpd/redis_pool/worker.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/runtime/process.hpp>
#include <otpd/uv/handle.hpp>

namespace otpd::redis_pool {

namespace {

namespace rt = otpd::runtime;
using core::errc;
using redis_client::connection;
using redis_client::connection_state;
using redis_client::reply_result;

// uv handles owned by the worker; they are closed before the loop ends and
// the worker object outlives the loop, so no handle outlives its memory.
class worker {
 public:
  explicit worker(worker_options o) : o_(std::move(o)) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  worker(worker&&) = delete;
  worker& operator=(worker&&) = delete;
  ~worker() = default;

  int run();

 private:
  void run_loop();
  void start_mailbox();
  void on_mailbox();
  void on_call(rt::message&& m);
  void answer(const rt::from& caller, const std::string& body);
  void begin_stop(const char* why);
  void maybe_finish();
  void finish();
  void on_health();

  worker_options o_;
  uv_loop_t loop_{};
  uv_poll_t mailbox_{};
  uv_signal_t sigterm_{};
  uv_signal_t sigint_{};
  uv_prepare_t flush_{};
  uv_timer_t drain_{};
  uv_timer_t health_{};
  std::optional<connection> conn_;
  std::size_t outstanding_ = 0;
  std::uint64_t served_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t seen_at_health_ = 0;
  bool posted_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  bool ready_sent_ = false;
};

int worker::run() {
  std::string name = member_name(o_.pool, o_.index);
  if (auto i = rt::init({.runtime_dir = {}, .name = name}); !i) {
    core::log_error("unable to open the mailbox of {}: {}; exiting", name, i.error().message());
    return 111;
  }
  std::string node = o_.node.empty() ? default_node() : o_.node;
  if (auto store = shm_table::persistent_term::open(node); !store) {
    core::log_warn(
        "unable to open the persistent_term store of node {}: {}; pool facts unpublished", node,
        store.error().message());
  } else if (auto p = publish_member(*store, o_.pool, o_.index, o_.size, {name, rt::self()}); !p) {
    core::log_warn("unable to publish member {} of pool {}: {}; continuing", name, o_.pool,
                   p.error().message());
  }

  uv_loop_init(&loop_);
  loop_.data = this;
  connection::options co;
  co.where = o_.where;
  co.name = name;
  co.connect_timeout = o_.connect_timeout;
  co.request_timeout = o_.request_timeout;
  co.backoff_base = o_.backoff_base;
  co.backoff_cap = o_.backoff_cap;
  co.max_in_flight = o_.max_in_flight;
  co.password = o_.password;
  co.database = o_.database;
  conn_.emplace(&loop_, co, [this](const connection::transition& t) {
    if (t.to == connection_state::connected && !ready_sent_) {
      ready_sent_ = true;
      rt::notify_ready();
      start_mailbox();
    }
  });

  uv_poll_init(&loop_, &mailbox_, rt::event_fd());
  mailbox_.data = this;
  for (auto [h, sig] : {std::pair{&sigterm_, SIGTERM}, std::pair{&sigint_, SIGINT}}) {
    uv_signal_init(&loop_, h);
    h->data = this;
    uv_signal_start(
        h, [](uv_signal_t* s, int) { static_cast<worker*>(s->data)->begin_stop("signal"); }, sig);
  }
  // Replies posted during a loop turn go out together just before the loop
  // polls again: one write per caller per turn instead of one per reply.
  uv_prepare_init(&loop_, &flush_);
  flush_.data = this;
  uv_prepare_start(&flush_, [](uv_prepare_t* h) {
    auto* w = static_cast<worker*>(h->data);
    if (w->posted_) {
      w->posted_ = false;
      if (auto f = rt::flush(core::deadline::after(std::chrono::seconds(1))); !f) {
        core::log_warn("unable to deliver replies: {}; those callers time out",
                       f.error().message());
      }
    }
  });
  uv_timer_init(&loop_, &drain_);
  drain_.data = this;
  uv_timer_init(&loop_, &health_);
  health_.data = this;
  if (o_.health_interval.count() > 0) {
    auto ms = static_cast<std::uint64_t>(o_.health_interval.count());
    uv_timer_start(
        &health_, [](uv_timer_t* t) { static_cast<worker*>(t->data)->on_health(); }, ms, ms);
  }

  conn_->start();
  // With wait_connected, calls that arrive before the first connect wait in
  // the mailbox (bounded by their callers' timeouts) instead of failing.
  if (!o_.wait_connected) {
    ready_sent_ = true;
    rt::notify_ready();
    start_mailbox();
  }
  core::log_info("{}: serving pool {} ({} of {}) against {}", name, o_.pool, o_.index, o_.size,
                 o_.where.to_string());
  run_loop();
  (void)rt::flush(core::deadline::after(std::chrono::seconds(1)));
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    core::log_warn("{}: loop closed with handles left ({})", name, uv_strerror(rc));
  }
  core::log_info("{}: stopped after {} commands", name, served_);
  rt::shutdown();
  return 0;
}

// Polls the loop without blocking for a short while after the last
// activity before sleeping in epoll: waking a halted vCPU costs tens of µs
// on this kind of guest, and a request is two hand-offs through the worker
// (mailbox in, Redis reply in). An idle worker sleeps; spin 0 disables it.
void worker::run_loop() {
  using clock = std::chrono::steady_clock;
  if (o_.spin.count() <= 0) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    return;
  }
  bool alive = true;
  while (alive) {
    auto seen = received_ + served_;
    auto spin_end = clock::now() + o_.spin;
    while (alive && clock::now() < spin_end) {
      alive = uv_run(&loop_, UV_RUN_NOWAIT) != 0;
      if (received_ + served_ != seen) {
        seen = received_ + served_;
        spin_end = clock::now() + o_.spin;
      }
    }
    if (alive) {
      alive = uv_run(&loop_, UV_RUN_ONCE) != 0;
    }
  }
}

void worker::start_mailbox() {
  uv_poll_start(&mailbox_, UV_READABLE,
                [](uv_poll_t* h, int, int) { static_cast<worker*>(h->data)->on_mailbox(); });
  // Messages may have arrived before the poll was armed: take them now
  // rather than after the first poll turn.
  on_mailbox();
}

void worker::on_mailbox() {
  if (finished_) {
    return;
  }
  rt::dispatch_pending();
  while (true) {
    auto m = rt::receive(core::deadline::after(std::chrono::nanoseconds(0)));
    if (!m) {
      return;
    }
    ++received_;
    switch (m->kind) {
      case rt::kind::call:
        on_call(std::move(*m));
        break;
      case rt::kind::system: {
        auto cmd = m->as<std::string>();
        if (cmd && *cmd == "stop") {
          begin_stop("stop request");
        }
        break;
      }
      default:
        // Casts, stray replies and DOWNs mean nothing to a worker.
        break;
    }
    if (finished_) {
      return;
    }
  }
}

void worker::on_call(rt::message&& m) {
  rt::from caller{m.from, m.ref};
  if (stopping_) {
    answer(caller, encode_failure(errc::shutting_down));
    return;
  }
  auto argv = decode_request(m.body);
  if (!argv) {
    answer(caller, encode_failure(errc::malformed));
    return;
  }
  ++outstanding_;
  conn_->command(*argv, [this, caller](const reply_result& r) {
    --outstanding_;
    ++served_;
    answer(caller, encode_result(r));
    if (stopping_) {
      maybe_finish();
    }
  });
}

void worker::answer(const rt::from& caller, const std::string& body) {
  // A caller that is gone makes post fail with noproc: nothing to do.
  if (rt::post_message(caller.pid, rt::kind::reply, caller.ref, body)) {
    posted_ = true;
  }
}

void worker::begin_stop(const char* why) {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  core::log_info("{}: stopping ({}), {} calls in flight", member_name(o_.pool, o_.index), why,
                 outstanding_);
  // Calls in flight get their replies, within one request deadline; then
  // whatever is left is answered shutting_down by the connection's stop.
  auto ms = static_cast<std::uint64_t>(o_.request_timeout.count()) + 100;
  uv_timer_start(
      &drain_, [](uv_timer_t* t) { static_cast<worker*>(t->data)->finish(); }, ms, 0);
  maybe_finish();
}

void worker::maybe_finish() {
  if (outstanding_ == 0) {
    finish();
  }
}

// May run inside a reply callback of the connection: destroying the
// connection there is allowed by its contract (it answers what it still owes
// and frees its handles from the loop later).
void worker::finish() {
  if (finished_) {
    return;
  }
  finished_ = true;
  conn_.reset();
  // The worker outlives its loop, so nothing is freed when the closes end.
  // The flush handle closes last, after the replies of this turn went out.
  uv::close_all({uv::as_handle(&mailbox_), uv::as_handle(&sigterm_), uv::as_handle(&sigint_),
                 uv::as_handle(&drain_), uv::as_handle(&health_), uv::as_handle(&flush_)},
                {});
}

void worker::on_health() {
  if (stopping_ || !conn_ || conn_->state() != connection_state::connected) {
    return;
  }
  if (served_ != seen_at_health_ || outstanding_ > 0) {
    seen_at_health_ = served_;
    return;
  }
  conn_->command({"PING"}, [this](reply_result r) {
    // A stop answers the PING shutting_down: nothing to report then.
    if ((!r && r.error() != errc::shutting_down) || (r && !r->is_status())) {
      core::log_warn("{}: health PING failed: {}", member_name(o_.pool, o_.index),
                     r ? r->to_string() : r.error().message());
    }
  });
}

}  // namespace

int run_worker(const worker_options& options) {
  auto w = std::make_unique<worker>(options);
  return w->run();
}

}  // namespace otpd::redis_pool

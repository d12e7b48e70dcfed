#include <time.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <limits>

#include <fmt/format.h>

#include <otpd/supervisor/tree.hpp>

namespace otpd::supervisor {

const char* to_string(child_state s) noexcept {
  switch (s) {
    case child_state::starting:
      return "starting";
    case child_state::running:
      return "running";
    case child_state::stopping:
      return "stopping";
    case child_state::stopped:
      return "stopped";
    case child_state::failed:
      return "failed";
    case child_state::backoff:
      return "backoff";
  }
  return "?";
}

namespace {

bool is_down(const node& n) {
  return n.state == child_state::stopped || n.state == child_state::failed ||
         n.state == child_state::backoff;
}

std::int64_t system_wall_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

core::exit_reason shutdown_reason() {
  return {core::exit_kind::shutdown, 0};
}

}  // namespace

tree::tree(std::shared_ptr<const config> cfg, clock_fn now, std::uint64_t seed, clock_fn wall)
    : cfg_(std::move(cfg)),
      now_(std::move(now)),
      wall_(wall ? std::move(wall) : clock_fn(system_wall_ms)),
      rng_(static_cast<std::uint_fast32_t>(seed)) {
  root_ = std::make_unique<node>();
  root_->uid = next_uid_++;
  root_->id = "root";
  root_->spec = std::shared_ptr<const child_spec>(cfg_, &cfg_->root);
  root_->is_supervisor = true;
  by_uid_[root_->uid] = root_.get();
  build_children(*root_);
}

tree::~tree() = default;

node* tree::add_node(node* parent, std::shared_ptr<const child_spec> spec, std::size_t pos) {
  auto n = std::make_unique<node>();
  n->uid = next_uid_++;
  n->parent = parent;
  n->id = spec->id;
  n->path = parent->path.empty() ? n->id : parent->path + "/" + n->id;
  n->is_supervisor = spec->is_supervisor;
  n->spec = std::move(spec);
  node* raw = n.get();
  by_uid_[raw->uid] = raw;
  pos = std::min(pos, parent->children.size());
  parent->children.insert(parent->children.begin() + static_cast<std::ptrdiff_t>(pos),
                          std::move(n));
  if (raw->is_supervisor) {
    build_children(*raw);
  }
  return raw;
}

void tree::collect(node& n) {
  for (auto& c : n.children) {
    collect(*c);
  }
  by_uid_.erase(n.uid);
}

void tree::erase_node(node* n) {
  node* parent = n->parent;
  collect(*n);
  auto& v = parent->children;
  v.erase(std::remove_if(v.begin(), v.end(), [n](const auto& p) { return p.get() == n; }), v.end());
}

void tree::build_children(node& sup) {
  while (!sup.children.empty()) {
    erase_node(sup.children.back().get());
  }
  if (sup.sup().strat == strategy::simple_one_for_one) {
    return;
  }
  const auto& specs = sup.sup().children;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    add_node(&sup, std::shared_ptr<const child_spec>(sup.spec, &specs[i]), sup.children.size());
  }
}

void tree::emit(event ev) {
  action a;
  a.k = action::kind::notify;
  a.ev = std::move(ev);
  actions_.push_back(std::move(a));
}

std::vector<action> tree::take_actions() {
  std::vector<action> out;
  out.swap(actions_);
  return out;
}

node* tree::find(std::uint64_t uid) const {
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? nullptr : it->second;
}

void tree::for_each(const std::function<void(const node&)>& fn) const {
  std::function<void(const node&)> walk = [&](const node& n) {
    fn(n);
    for (const auto& c : n.children) {
      walk(*c);
    }
  };
  walk(*root_);
}

core::Result<node*> tree::resolve(const std::string& who) const {
  std::vector<node*> by_id;
  node* by_path = nullptr;
  for (const auto& [uid, n] : by_uid_) {
    if (n == root_.get() || n->removed) {
      continue;
    }
    if (n->path == who) {
      by_path = n;
    }
    if (n->id == who) {
      by_id.push_back(n);
    }
  }
  if (by_path != nullptr) {
    return by_path;
  }
  if (by_id.size() == 1) {
    return by_id[0];
  }
  if (by_id.empty()) {
    return {core::errc::not_found, fmt::format("no such child: {}", who)};
  }
  std::vector<std::string> paths;
  for (auto* n : by_id) {
    paths.push_back(n->path);
  }
  std::sort(paths.begin(), paths.end());
  return {core::errc::not_found,
          fmt::format("ambiguous id {}: use a path ({})", who, fmt::join(paths, ", "))};
}

// ---- starting and stopping ----------------------------------------------------

void tree::hold_at_start(const std::vector<std::string>& paths) {
  initial_holds_.insert(paths.begin(), paths.end());
}

std::vector<std::string> tree::held_paths() const {
  std::vector<std::string> out;
  for_each([&out](const node& n) {
    if (n.held && !n.removed && !n.dynamic) {
      out.push_back(n.path);
    }
  });
  return out;
}

void tree::start() {
  if (!is_down(*root_)) {
    return;
  }
  begin_start(*root_);
}

void tree::shutdown() {
  if (shutting_down_) {
    return;
  }
  shutting_down_ = true;
  if (is_down(*root_) && root_->phase == sup_phase::idle) {
    action a;
    a.k = action::kind::exit_node;
    a.exit_code = 0;
    actions_.push_back(std::move(a));
    return;
  }
  begin_stop(*root_);
}

void tree::reset_subtree(node& sup) {
  // OTP: a restarted supervisor starts from its original child list, so
  // temporary children dropped by sibling restarts come back and dynamic
  // children are gone.
  std::vector<node*> dynamic;
  for (auto& c : sup.children) {
    if (c->dynamic || c->removed) {
      dynamic.push_back(c.get());
    }
  }
  for (auto* d : dynamic) {
    erase_node(d);
  }
  for (auto& c : sup.children) {
    c->dropped = false;
    // Held by an operator before otpd restarted: once, at the first start.
    c->held = !initial_holds_.empty() && initial_holds_.erase(c->path) > 0;
    cancel_backoff(*c);
    c->backoff_attempt = 0;
  }
  sup.restart_log.clear();
  sup.steps.clear();
  sup.waiting = nullptr;
  sup.give_up_cause.clear();
}

void tree::begin_start(node& child) {
  if (child.ever_started) {
    ++child.restarts;
  }
  child.ever_started = true;
  child.state = child_state::starting;
  if (!child.is_supervisor) {
    child.pid = -1;
    action a;
    a.k = action::kind::spawn;
    a.uid = child.uid;
    actions_.push_back(std::move(a));
    return;
  }
  reset_subtree(child);
  child.phase = sup_phase::starting;
  for (auto& c : child.children) {
    child.steps.push_back({step::kind::start, c.get()});
  }
  child.steps.push_back({step::kind::finish_start, &child});
  process(child);
}

void tree::begin_stop(node& child) {
  if (!child.is_supervisor) {
    cancel_backoff(child);
    if (child.state == child_state::starting || child.state == child_state::running) {
      child.state = child_state::stopping;
      action a;
      a.k = action::kind::stop;
      a.uid = child.uid;
      actions_.push_back(std::move(a));
    }
    return;
  }
  if (child.phase == sup_phase::killed) {
    return;  // already going down: it tells its parent when it is done
  }
  child.state = child_state::stopping;
  child.phase = sup_phase::stopping;
  child.steps.clear();
  child.waiting = nullptr;
  enqueue_stop_all(child);
  child.steps.push_back({step::kind::finish_stop, &child});
  process(child);
}

void tree::enqueue_stop_all(node& sup) {
  for (auto it = sup.children.rbegin(); it != sup.children.rend(); ++it) {
    cancel_backoff(**it);
    sup.steps.push_back({step::kind::stop, it->get()});
  }
}

void tree::step_done(node& sup, node* child) {
  if (sup.waiting != child || sup.steps.empty()) {
    return;
  }
  sup.waiting = nullptr;
  sup.steps.pop_front();
  process(sup);
}

// Runs the supervisor's queue until a step has to wait for a child. Steps
// may complete synchronously (an empty nested supervisor), and the queue may
// be replaced under us (a give-up): so the loop re-reads the front each time.
void tree::process(node& sup) {
  if (sup.in_process) {
    return;
  }
  sup.in_process = true;
  while (sup.waiting == nullptr && !sup.steps.empty()) {
    step s = sup.steps.front();
    node* t = s.target;
    switch (s.k) {
      case step::kind::start:
        if (!is_down(*t) || t->dropped || t->held || t->removed) {
          sup.steps.pop_front();
          continue;
        }
        t->backoff_pending = false;
        t->next_start_ms = 0;
        sup.waiting = t;
        begin_start(*t);
        continue;
      case step::kind::stop:
        if (is_down(*t)) {
          cancel_backoff(*t);
          sup.steps.pop_front();
          continue;
        }
        sup.waiting = t;
        begin_stop(*t);
        continue;
      case step::kind::remove:
        sup.steps.pop_front();
        if (is_down(*t)) {
          erase_node(t);
        } else {
          t->removed = false;  // started again meanwhile; keep it
        }
        continue;
      case step::kind::finish_start: {
        sup.steps.pop_front();
        sup.phase = sup_phase::running;
        sup.state = child_state::running;
        sup.started_at_ms = now_();
        emit({"supervisor_started", sup.path.empty() ? "/" : sup.path, -1, false, {}, ""});
        if (sup.parent != nullptr) {
          step_done(*sup.parent, &sup);
        }
        continue;
      }
      case step::kind::finish_stop:
      case step::kind::fail_start: {
        sup.steps.pop_front();
        sup.in_process = false;
        supervisor_ended(sup, shutdown_reason());
        return;
      }
    }
  }
  sup.in_process = false;
}

// All children of sup are down; say so to its parent according to why.
void tree::supervisor_ended(node& sup, const core::exit_reason& why) {
  sup_phase phase = sup.phase;
  const core::exit_reason reason =
      phase == sup_phase::killed ? core::exit_reason{core::exit_kind::killed, SIGKILL} : why;
  sup.phase = sup_phase::idle;
  sup.has_exit = true;
  sup.last_exit = reason;
  record_exit(sup, reason);
  std::string path = sup.path.empty() ? "/" : sup.path;
  if (phase == sup_phase::failing) {
    sup.state = child_state::failed;
    emit({"supervisor_stopped", path, -1, true, reason, "start failed: " + sup.give_up_cause});
  } else {
    sup.state = child_state::stopped;
    emit({"supervisor_stopped", path, -1, true, reason, sup.give_up_cause});
  }
  if (sup.parent == nullptr) {
    action a;
    a.k = action::kind::exit_node;
    if (phase == sup_phase::stopping) {
      a.exit_code = 0;
    } else if (phase == sup_phase::failing) {
      a.exit_code = 1;
      a.ev.detail = "root supervisor failed to start: " + sup.give_up_cause;
    } else {
      a.exit_code = 1;
      a.ev.detail = "root supervisor gave up: " + sup.give_up_cause;
    }
    actions_.push_back(std::move(a));
    return;
  }
  node& parent = *sup.parent;
  if (phase == sup_phase::killed) {
    if (parent.phase == sup_phase::starting && parent.waiting == &sup) {
      start_failed(parent, sup, reason);  // killed while its parent waited for its start
    } else if (parent.phase == sup_phase::running || parent.phase == sup_phase::starting) {
      child_exited(parent, sup, reason);
    } else {
      step_done(parent, &sup);  // its parent is stopping (or killed) and may wait for it
    }
  } else if (phase == sup_phase::stopping) {
    step_done(parent, &sup);
  } else if (phase == sup_phase::failing) {
    start_failed(parent, sup, reason);
  } else {
    child_exited(parent, sup, reason);
  }
}

// ---- events from the owner ---------------------------------------------------

void tree::on_spawned(std::uint64_t uid, pid_t pid) {
  node* n = find(uid);
  if (n == nullptr || n->is_supervisor) {
    return;
  }
  n->pid = pid;
  emit({"started", n->path, pid, false, {}, ""});
}

void tree::on_ready(std::uint64_t uid) {
  node* n = find(uid);
  if (n == nullptr || n->is_supervisor || n->state != child_state::starting) {
    return;
  }
  n->state = child_state::running;
  n->started_at_ms = now_();
  emit({"ready", n->path, n->pid, false, {}, ""});
  step_done(*n->parent, n);
}

void tree::on_exit(std::uint64_t uid, core::exit_reason reason) {
  node* n = find(uid);
  if (n == nullptr || n->is_supervisor) {
    return;
  }
  node& sup = *n->parent;
  child_state prev = n->state;
  pid_t pid = n->pid;
  n->pid = -1;
  if (prev == child_state::stopped || prev == child_state::failed || prev == child_state::backoff) {
    return;  // no process: nothing exited
  }
  n->has_exit = true;
  n->last_exit = reason;
  record_exit(*n, reason);
  switch (prev) {
    case child_state::stopping:
      n->state = child_state::stopped;
      emit({"exited", n->path, pid, true, reason, ""});
      step_done(sup, n);
      return;
    case child_state::starting:
      n->state = child_state::failed;
      emit({"start_failed", n->path, pid, true, reason, ""});
      start_failed(sup, *n, reason);
      return;
    case child_state::running:
      n->state = child_state::stopped;
      emit({"exited", n->path, pid, true, reason, ""});
      child_exited(sup, *n, reason);
      return;
    case child_state::stopped:
    case child_state::failed:
    case child_state::backoff:
      return;
  }
}

void tree::record_exit(node& n, const core::exit_reason& reason) {
  if (n.last_exits.size() >= max_last_exits) {
    n.last_exits.erase(n.last_exits.begin());
  }
  n.last_exits.push_back({wall_(), reason});
}

// A restart that waited for its backoff delay will not happen (a stop, a
// restart of the whole supervisor): the child is plainly stopped.
void tree::cancel_backoff(node& n) {
  n.backoff_pending = false;
  n.next_start_ms = 0;
  if (n.state == child_state::backoff) {
    n.state = child_state::stopped;
  }
}

int tree::restarts_in_window(const node& sup) const {
  std::int64_t since = now_() - static_cast<std::int64_t>(sup.sup().max_seconds) * 1000;
  return static_cast<int>(std::count_if(sup.restart_log.begin(), sup.restart_log.end(),
                                        [&](std::int64_t t) { return t >= since; }));
}

void tree::on_timer(std::uint64_t uid) {
  node* n = find(uid);
  if (n == nullptr || !n->backoff_pending) {
    return;
  }
  n->backoff_pending = false;
  node& sup = *n->parent;
  if (sup.phase == sup_phase::running || sup.phase == sup_phase::starting) {
    sup.steps.push_back({step::kind::start, n});
    process(sup);
  } else {
    cancel_backoff(*n);
  }
}

void tree::start_failed(node& sup, node& child, const core::exit_reason& reason) {
  if (sup.waiting == &child && !sup.steps.empty()) {
    sup.waiting = nullptr;
    sup.steps.pop_front();
  }
  switch (sup.phase) {
    case sup_phase::starting:
      // OTP: a child that fails to start makes its supervisor's start fail;
      // what already started is stopped in reverse order.
      sup.phase = sup_phase::failing;
      sup.give_up_cause =
          fmt::format("child {} failed to start: {}", child.path, reason.to_string());
      sup.steps.clear();
      enqueue_stop_all(sup);
      sup.steps.push_back({step::kind::fail_start, &sup});
      process(sup);
      return;
    case sup_phase::running:
      // A failed restart is tried again and counts toward intensity, as OTP's
      // try_again does.
      child_exited(sup, child, reason);
      process(sup);
      return;
    default:
      process(sup);
      return;
  }
}

bool tree::is_normal_for(const node& child, const core::exit_reason& reason) const {
  if (child.is_supervisor) {
    return reason.is_normal();
  }
  const worker_spec& w = child.worker();
  // Exit codes count as the worker's success_exit_codes say (default: 0 only),
  // like systemd's SuccessExitStatus=.
  if (reason.kind == core::exit_kind::normal || reason.kind == core::exit_kind::exit_code) {
    return std::find(w.success_exit_codes.begin(), w.success_exit_codes.end(), reason.value) !=
           w.success_exit_codes.end();
  }
  if (reason.is_normal()) {
    return true;
  }
  // The worker's own shutdown signal (sent by someone else) is a normal stop.
  return reason.kind == core::exit_kind::signal && reason.value == w.shutdown.signal;
}

void tree::child_exited(node& sup, node& child, const core::exit_reason& reason) {
  if (sup.phase != sup_phase::running && sup.phase != sup_phase::starting) {
    return;
  }
  if (child.held) {
    return;
  }
  restart_type rt = child.spec->restart;
  bool restart = rt == restart_type::permanent ||
                 (rt == restart_type::transient && !is_normal_for(child, reason));
  if (!restart) {
    if (!is_normal_for(child, reason) && child.state != child_state::failed) {
      child.state = child_state::failed;
    }
    if (child.dynamic) {
      child.removed = true;
      sup.steps.push_back({step::kind::remove, &child});
      process(sup);
    }
    return;
  }
  if (!add_restart(sup)) {
    give_up(sup, fmt::format("child {} exited: {}", child.path, reason.to_string()));
    return;
  }
  emit({"restarting", child.path, -1, true, reason,
        fmt::format("strategy {}", to_string(sup.sup().strat))});
  std::size_t at = actions_.size() - 1;
  enqueue_restart(sup, child);
  if (child.backoff_pending) {
    actions_[at].ev.detail +=
        fmt::format(", backoff {} ms", std::max<std::int64_t>(0, child.next_start_ms - now_()));
  }
  process(sup);
}

bool tree::add_restart(node& sup) {
  std::int64_t now = now_();
  std::int64_t period = static_cast<std::int64_t>(sup.sup().max_seconds) * 1000;
  // Exact milliseconds: a restart stays in the window while now - t <= period
  // (OTP keeps t >= now - period in whole seconds).
  auto keep = std::find_if(sup.restart_log.begin(), sup.restart_log.end(),
                           [&](std::int64_t t) { return t >= now - period; });
  sup.restart_log.erase(sup.restart_log.begin(), keep);
  sup.restart_log.push_back(now);
  return static_cast<int>(sup.restart_log.size()) <= sup.sup().max_restarts;
}

void tree::give_up(node& sup, const std::string& cause) {
  emit({"intensity_exceeded",
        sup.path.empty() ? "/" : sup.path,
        -1,
        false,
        {},
        fmt::format("{} (more than {} restarts in {} s)", cause, sup.sup().max_restarts,
                    sup.sup().max_seconds)});
  sup.phase = sup_phase::giving_up;
  sup.state = child_state::stopping;
  sup.give_up_cause = cause;
  sup.steps.clear();
  sup.waiting = nullptr;
  enqueue_stop_all(sup);
  sup.steps.push_back({step::kind::finish_stop, &sup});
  process(sup);
}

void tree::enqueue_restart(node& sup, node& child) {
  strategy st = sup.sup().strat;
  if (st == strategy::one_for_one || st == strategy::simple_one_for_one) {
    if (!child.is_supervisor && child.worker().backoff.enabled) {
      const backoff_spec& b = child.worker().backoff;
      if (child.started_at_ms != 0 && now_() - child.started_at_ms >= b.reset_after_ms) {
        child.backoff_attempt = 0;
      }
      double d = b.initial_ms * std::pow(b.factor, child.backoff_attempt);
      d = std::min(d, static_cast<double>(b.max_ms));
      std::uniform_real_distribution<double> jitter(1.0 - b.jitter, 1.0 + b.jitter);
      d *= jitter(rng_);
      ++child.backoff_attempt;
      if (d >= 1.0) {
        child.backoff_pending = true;
        if (is_down(child)) {
          // A start that failed keeps `failed` only until its retry is
          // scheduled: from now on it waits, and status says until when.
          child.state = child_state::backoff;
        }
        child.next_start_ms = now_() + static_cast<std::int64_t>(d);
        action a;
        a.k = action::kind::schedule;
        a.uid = child.uid;
        a.delay_ms = static_cast<int>(d);
        actions_.push_back(std::move(a));
        return;
      }
    }
    if (sup.phase == sup_phase::running && sup.steps.empty() && sup.waiting == nullptr) {
      // One_for_one children are independent: while the supervisor has no
      // other work queued, a restart starts at once and does not hold the
      // queue until the child is started, so a burst of deaths (hundreds
      // killed at once) restarts them all concurrently instead of one exec
      // after another. A failed start still comes back through start_failed
      // and is tried again, counting toward intensity, as before.
      begin_start(child);
      return;
    }
    sup.steps.push_back({step::kind::start, &child});
    return;
  }
  std::size_t first = 0;
  if (st == strategy::rest_for_one) {
    for (std::size_t i = 0; i < sup.children.size(); ++i) {
      if (sup.children[i].get() == &child) {
        first = i;
      }
    }
  }
  // Stop the others in reverse order; temporary ones are dropped, as in OTP.
  for (std::size_t i = sup.children.size(); i-- > first;) {
    node& c = *sup.children[i];
    if (&c == &child) {
      continue;
    }
    if (c.spec->restart == restart_type::temporary && !is_down(c)) {
      c.dropped = true;
    }
    sup.steps.push_back({step::kind::stop, &c});
  }
  for (std::size_t i = first; i < sup.children.size(); ++i) {
    sup.steps.push_back({step::kind::start, sup.children[i].get()});
  }
}

// ---- operator commands -------------------------------------------------------

// The supervisor a dynamic-child command names: "", "/" and "root" are the root.
core::Result<node*> tree::resolve_supervisor(const std::string& who) const {
  if (who.empty() || who == "/" || who == "root") {
    return root_.get();
  }
  return resolve(who);
}

// A child an operator may (re)start: one whose supervisor is running.
core::Result<node*> tree::resolve_startable(const std::string& who) const {
  auto found = resolve(who);
  if (!found) {
    return found;
  }
  const node& sup = *(*found)->parent;
  if (sup.phase != sup_phase::running && sup.phase != sup_phase::starting) {
    return {core::errc::invalid_argument,
            fmt::format("its supervisor {} is not running", sup.path.empty() ? "/" : sup.path)};
  }
  return found;
}

core::Result<void> tree::stop_child(const std::string& who) {
  auto found = resolve(who);
  if (!found) {
    return found.fail();
  }
  node* n = *found;
  n->held = true;
  n->parent->steps.push_back({step::kind::stop, n});
  process(*n->parent);
  return {};
}

core::Result<void> tree::start_child(const std::string& who) {
  auto found = resolve_startable(who);
  if (!found) {
    return found.fail();
  }
  node* n = *found;
  node& sup = *n->parent;
  if (!is_down(*n)) {
    return {core::errc::already_exists,
            fmt::format("{} is already {}", n->path, to_string(n->state))};
  }
  n->held = false;
  n->dropped = false;
  sup.steps.push_back({step::kind::start, n});
  process(sup);
  return {};
}

core::Result<void> tree::restart_child(const std::string& who) {
  auto found = resolve_startable(who);
  if (!found) {
    return found.fail();
  }
  node* n = *found;
  node& sup = *n->parent;
  n->held = false;
  n->dropped = false;
  sup.steps.push_back({step::kind::stop, n});
  sup.steps.push_back({step::kind::start, n});
  process(sup);
  return {};
}

core::Result<void> tree::kill_supervisor(const std::string& who) {
  auto found = resolve(who);
  if (!found) {
    return found.fail();
  }
  node* n = *found;
  if (!n->is_supervisor) {
    return {core::errc::invalid_argument, fmt::format("{} is a worker, not a supervisor", n->path)};
  }
  if (n->parent == nullptr) {
    return {core::errc::invalid_argument,
            "the root supervisor is the node itself: use otpctl shutdown"};
  }
  if (n->phase == sup_phase::idle || n->phase == sup_phase::killed) {
    return {
        core::errc::invalid_argument,
        fmt::format("supervisor {} is {}", n->path,
                    n->phase == sup_phase::killed ? "already being killed" : to_string(n->state))};
  }
  kill_subtree(*n);
  return {};
}

// A killed supervisor's links in OTP take every worker under it down at
// once, not in reverse start order: SIGKILL to all of them first, then the
// queue only waits for each to be reaped before the supervisor ends.
void tree::kill_subtree(node& sup) {
  sup.phase = sup_phase::killed;
  sup.state = child_state::stopping;
  sup.steps.clear();
  sup.waiting = nullptr;
  for (auto& c : sup.children) {
    node& child = *c;
    if (child.is_supervisor) {
      if (child.phase != sup_phase::idle && child.phase != sup_phase::killed) {
        kill_subtree(child);
      }
      continue;
    }
    cancel_backoff(child);
    if (is_down(child)) {
      continue;
    }
    child.state = child_state::stopping;
    action a;
    a.k = action::kind::stop;
    a.uid = child.uid;
    a.brutal = true;
    actions_.push_back(std::move(a));
  }
  enqueue_stop_all(sup);
  sup.steps.push_back({step::kind::finish_stop, &sup});
  process(sup);
}

core::Result<std::string> tree::start_dynamic(const std::string& who,
                                              const std::vector<std::string>& args) {
  auto found = resolve_supervisor(who);
  if (!found) {
    return found.fail();
  }
  node* sup = *found;
  if (!sup->is_supervisor || sup->sup().strat != strategy::simple_one_for_one) {
    return {core::errc::invalid_argument,
            fmt::format("{} is not a simple_one_for_one supervisor", who)};
  }
  if (sup->phase != sup_phase::running && sup->phase != sup_phase::starting) {
    return {core::errc::invalid_argument, fmt::format("supervisor {} is not running", who)};
  }
  auto tmpl = sup->sup().child_template;
  auto spec = std::make_shared<child_spec>(*tmpl);
  spec->id = fmt::format("{}-{}", tmpl->id, ++sup->dynamic_counter);
  node* n = add_node(sup, std::move(spec), sup->children.size());
  n->dynamic = true;
  n->extra_args = args;
  sup->steps.push_back({step::kind::start, n});
  process(*sup);
  return n->path;
}

core::Result<void> tree::terminate_dynamic(const std::string& who, const std::string& child) {
  auto found = resolve_supervisor(who);
  if (!found) {
    return found.fail();
  }
  node* sup = *found;
  node* n = nullptr;
  for (auto& c : sup->children) {
    if (c->removed) {
      continue;
    }
    if (c->id == child || c->path == child || std::to_string(c->pid) == child) {
      n = c.get();
    }
  }
  if (n == nullptr || !n->dynamic) {
    return {core::errc::not_found, fmt::format("no such dynamic child of {}: {}", who, child)};
  }
  n->removed = true;
  n->held = true;
  sup->steps.push_back({step::kind::stop, n});
  sup->steps.push_back({step::kind::remove, n});
  process(*sup);
  return {};
}

// ---- reload ------------------------------------------------------------------

reload_summary tree::reload(std::shared_ptr<const config> cfg) {
  reload_summary out;
  cfg_ = std::move(cfg);
  reload_sup(*root_, cfg_->root, out);
  emit({"reload_applied",
        "/",
        -1,
        false,
        {},
        fmt::format("added [{}] removed [{}] changed [{}]", fmt::join(out.added, ", "),
                    fmt::join(out.removed, ", "), fmt::join(out.changed, ", "))});
  return out;
}

namespace {

// reload_sup's walk without its effects: the same matching (by id, a worker
// that became a supervisor is removed and added), nothing changed.
void plan_sup(const node& sup, const child_spec& spec, reload_summary& out) {
  if (spec.sup.strat == strategy::simple_one_for_one) {
    return;  // its children come from start-child, not from the file
  }
  auto path_of = [&sup](const std::string& id) {
    return sup.path.empty() ? id : sup.path + "/" + id;
  };
  std::vector<const node*> old;
  for (const auto& c : sup.children) {
    if (!c->removed && !c->dynamic) {
      old.push_back(c.get());
    }
  }
  for (const auto& cs : spec.sup.children) {
    auto it = std::find_if(old.begin(), old.end(),
                           [&cs](const node* n) { return n != nullptr && n->id == cs.id; });
    const node* existing = it == old.end() ? nullptr : *it;
    if (existing != nullptr && existing->is_supervisor == cs.is_supervisor) {
      *it = nullptr;
      if (existing->spec->fingerprint != cs.fingerprint) {
        out.changed.push_back(existing->path);
        out.changed_keys.emplace_back(existing->path, changed_keys(*existing->spec, cs));
      } else if (!cs.is_supervisor) {
        out.untouched.push_back(existing->path);
      }
      if (cs.is_supervisor) {
        plan_sup(*existing, cs, out);
      }
      continue;
    }
    out.added.push_back(path_of(cs.id));
  }
  for (const node* n : old) {
    if (n != nullptr) {
      out.removed.push_back(n->path);
    }
  }
}

}  // namespace

reload_summary tree::plan_reload(const config& cfg) const {
  reload_summary out;
  plan_sup(*root_, cfg.root, out);
  return out;
}

void tree::reload_sup(node& sup, const child_spec& spec, reload_summary& out) {
  // Aliasing pointers keep the whole new config alive while any node uses it.
  sup.spec = std::shared_ptr<const child_spec>(cfg_, &spec);
  if (spec.sup.strat == strategy::simple_one_for_one) {
    return;
  }
  bool running = sup.phase == sup_phase::running || sup.phase == sup_phase::starting;
  std::vector<std::unique_ptr<node>> old;
  old.swap(sup.children);
  auto take = [&](const std::string& id) -> std::unique_ptr<node> {
    for (auto& p : old) {
      if (p && !p->removed && !p->dynamic && p->id == id) {
        return std::move(p);
      }
    }
    return nullptr;
  };
  std::vector<node*> added, changed;
  std::vector<std::unique_ptr<node>> next;
  for (const auto& cs : spec.sup.children) {
    auto alias = std::shared_ptr<const child_spec>(cfg_, &cs);
    auto existing = take(cs.id);
    if (existing && existing->is_supervisor == cs.is_supervisor) {
      if (cs.is_supervisor) {
        if (existing->spec->fingerprint != cs.fingerprint) {
          out.changed.push_back(existing->path);
        }
        reload_sup(*existing, cs, out);
      } else {
        if (existing->spec->fingerprint != cs.fingerprint) {
          changed.push_back(existing.get());
          out.changed.push_back(existing->path);
        }
        existing->spec = alias;
      }
      next.push_back(std::move(existing));
      continue;
    }
    if (existing) {
      // A worker became a supervisor or the reverse: remove, then add.
      old.push_back(std::move(existing));
    }
    sup.children.swap(next);
    node* n = add_node(&sup, alias, sup.children.size());
    sup.children.swap(next);
    added.push_back(n);
    out.added.push_back(n->path);
  }
  std::vector<node*> removed;
  for (auto& p : old) {
    if (!p) {
      continue;
    }
    if (!p->removed) {
      out.removed.push_back(p->path);
    }
    p->removed = true;
    removed.push_back(p.get());
    next.push_back(std::move(p));
  }
  sup.children = std::move(next);
  if (!running) {
    for (auto* r : removed) {
      if (is_down(*r)) {
        erase_node(r);
      }
    }
    return;
  }
  for (auto it = removed.rbegin(); it != removed.rend(); ++it) {
    sup.steps.push_back({step::kind::stop, *it});
    sup.steps.push_back({step::kind::remove, *it});
  }
  for (auto* c : changed) {
    if (!is_down(*c)) {
      sup.steps.push_back({step::kind::stop, c});
      sup.steps.push_back({step::kind::start, c});
    }
  }
  for (auto* a : added) {
    sup.steps.push_back({step::kind::start, a});
  }
  process(sup);
}

// ---- handover (otpctl reexec) -------------------------------------------------

namespace {

const char* phase_name(sup_phase p) {
  switch (p) {
    case sup_phase::idle:
      return "idle";
    case sup_phase::starting:
      return "starting";
    case sup_phase::running:
      return "running";
    case sup_phase::stopping:
      return "stopping";
    case sup_phase::giving_up:
      return "giving up";
    case sup_phase::failing:
      return "failing";
    case sup_phase::killed:
      return "being killed";
  }
  return "busy";
}

}  // namespace

std::string tree::busy() const {
  if (shutting_down_) {
    return "busy: the node is stopping";
  }
  // Children first: a supervisor that is starting waits for one of them,
  // and the operator wants to hear which.
  std::string why;
  std::function<void(const node&)> walk = [&](const node& n) {
    for (const auto& c : n.children) {
      if (why.empty()) {
        walk(*c);
      }
    }
    if (!why.empty()) {
      return;
    }
    std::string path = n.path.empty() ? "/" : n.path;
    if (n.state == child_state::starting || n.state == child_state::stopping) {
      why = fmt::format("busy: {} is {}; try again", path, to_string(n.state));
    } else if (n.is_supervisor && n.phase != sup_phase::idle && n.phase != sup_phase::running) {
      why = fmt::format("busy: {} is {}; try again", path, phase_name(n.phase));
    } else if (n.is_supervisor && (!n.steps.empty() || n.waiting != nullptr)) {
      why = fmt::format("busy: {} has children to start or stop; try again", path);
    }
  };
  walk(*root_);
  return why;
}

std::vector<node_snapshot> tree::snapshot() const {
  std::vector<node_snapshot> out;
  out.reserve(by_uid_.size());
  for_each([&out](const node& n) {
    node_snapshot s;
    s.path = n.path;
    s.id = n.id;
    s.is_supervisor = n.is_supervisor;
    s.state = n.state;
    s.pid = n.pid;
    s.restarts = n.restarts;
    s.ever_started = n.ever_started;
    s.has_exit = n.has_exit;
    s.last_exit = n.last_exit;
    s.last_exits = n.last_exits;
    s.started_at_ms = n.started_at_ms;
    s.dropped = n.dropped;
    s.held = n.held;
    s.dynamic = n.dynamic;
    s.extra_args = n.extra_args;
    s.backoff_pending = n.backoff_pending;
    s.backoff_attempt = n.backoff_attempt;
    s.next_start_ms = n.next_start_ms;
    s.phase = n.phase;
    s.restart_log = n.restart_log;
    s.dynamic_counter = n.dynamic_counter;
    s.give_up_cause = n.give_up_cause;
    out.push_back(std::move(s));
  });
  return out;
}

core::Result<adopt_summary> tree::adopt(const std::vector<node_snapshot>& nodes) {
  if (root_->ever_started || root_->phase != sup_phase::idle) {
    return {core::errc::invalid_argument, "the tree has started already: nothing to adopt into"};
  }
  if (nodes.empty() || !nodes.front().path.empty() || !nodes.front().is_supervisor) {
    return {core::errc::invalid_argument, "the handed-over state has no root supervisor"};
  }
  adopt_summary out;
  initial_holds_.clear();
  std::unordered_map<std::string, node*> by_path;
  for_each([&by_path](const node& n) { by_path[n.path] = const_cast<node*>(&n); });
  std::unordered_set<const node*> adopted;
  for (const node_snapshot& s : nodes) {
    auto it = by_path.find(s.path);
    node* n = it == by_path.end() ? nullptr : it->second;
    if (n == nullptr && s.dynamic) {
      // A simple_one_for_one child: made again from its supervisor's template.
      auto slash = s.path.rfind('/');
      auto up = by_path.find(slash == std::string::npos ? std::string() : s.path.substr(0, slash));
      node* sup = up == by_path.end() ? nullptr : up->second;
      if (sup != nullptr && sup->is_supervisor &&
          sup->sup().strat == strategy::simple_one_for_one && sup->sup().child_template) {
        auto spec = std::make_shared<child_spec>(*sup->sup().child_template);
        spec->id = s.id;
        n = add_node(sup, std::move(spec), sup->children.size());
        n->dynamic = true;
        by_path[n->path] = n;
      }
    }
    if (n == nullptr || n->is_supervisor != s.is_supervisor || adopted.count(n) != 0) {
      out.unknown.push_back(s.path);
      if (!s.is_supervisor && s.pid > 0) {
        out.orphans.push_back(s.pid);
      }
      continue;
    }
    adopted.insert(n);
    n->state = s.state;
    n->pid = s.is_supervisor ? -1 : s.pid;
    n->restarts = s.restarts;
    n->ever_started = s.ever_started;
    n->has_exit = s.has_exit;
    n->last_exit = s.last_exit;
    n->last_exits = s.last_exits;
    if (n->last_exits.size() > max_last_exits) {
      n->last_exits.erase(n->last_exits.begin(),
                          n->last_exits.end() - static_cast<std::ptrdiff_t>(max_last_exits));
    }
    n->started_at_ms = s.started_at_ms;
    n->dropped = s.dropped;
    n->held = s.held;
    n->extra_args = s.extra_args;
    n->backoff_pending = s.backoff_pending;
    n->backoff_attempt = s.backoff_attempt;
    n->next_start_ms = s.next_start_ms;
    // The old otpd hands over only a quiet tree (busy() empty). Should a
    // state in between come anyway, a process still there counts as running
    // and one without a process as stopped: its supervisor's rules apply
    // from there on.
    if (n->state == child_state::starting || n->state == child_state::stopping) {
      n->state = n->pid > 0 || s.is_supervisor ? child_state::running : child_state::stopped;
    }
    if (!s.is_supervisor && n->state == child_state::running && n->pid <= 0) {
      n->state = child_state::stopped;
    }
    if (s.is_supervisor) {
      n->restart_log = s.restart_log;
      n->dynamic_counter = s.dynamic_counter;
      n->give_up_cause = s.give_up_cause;
      n->phase = s.phase == sup_phase::idle || n->state != child_state::running
                     ? sup_phase::idle
                     : sup_phase::running;
      if (n->phase == sup_phase::idle && n->state == child_state::running) {
        n->state = child_state::stopped;
      }
    }
    if (n->backoff_pending) {
      // The restart waits for the rest of its delay, as it would have.
      action a;
      a.k = action::kind::schedule;
      a.uid = n->uid;
      a.delay_ms = static_cast<int>(
          std::clamp<std::int64_t>(n->next_start_ms - now_(), 0, std::numeric_limits<int>::max()));
      actions_.push_back(std::move(a));
    }
  }
  // Children the config has and the snapshot had not (the file changed in
  // the exec window): started like children a reload adds.
  std::vector<node*> sups;
  for_each([&](const node& c) {
    if (c.parent == nullptr || adopted.count(&c) != 0 || adopted.count(c.parent) == 0) {
      return;
    }
    node& sup = *c.parent;
    if (sup.phase != sup_phase::running || c.removed) {
      return;
    }
    out.fresh.push_back(c.path);
    sup.steps.push_back({step::kind::start, const_cast<node*>(&c)});
    if (std::find(sups.begin(), sups.end(), &sup) == sups.end()) {
      sups.push_back(&sup);
    }
  });
  for (node* sup : sups) {
    process(*sup);
  }
  return out;
}

}  // namespace otpd::supervisor

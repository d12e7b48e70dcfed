#include <otpd/redis_pool/codec.hpp>
#include <otpd/redis_pool/pool_client.hpp>
#include <otpd/runtime/process.hpp>

namespace otpd::redis_pool {

namespace rt = otpd::runtime;
using core::errc;
using redis_client::reply_result;

const char* to_string(strategy s) noexcept {
  switch (s) {
    case strategy::random:
      return "random";
    case strategy::round_robin:
      return "round_robin";
    case strategy::least_outstanding:
      return "least_outstanding";
  }
  return "?";
}

std::optional<strategy> strategy_from(std::string_view s) noexcept {
  if (s == "random") {
    return strategy::random;
  }
  if (s == "round_robin") {
    return strategy::round_robin;
  }
  if (s == "least_outstanding") {
    return strategy::least_outstanding;
  }
  return std::nullopt;
}

core::Result<pool_client> pool_client::open(const pool_options& options) {
  if (!valid_pool_name(options.pool)) {
    return errc::invalid_argument;
  }
  pool_client c;
  c.o_ = options;
  if (c.o_.node.empty()) {
    c.o_.node = default_node();
  }
  if (auto s = shm_table::persistent_term::open(c.o_.node); s) {
    c.store_.emplace(std::move(*s));
  }
  c.refresh();
  if (c.members_.empty()) {
    return errc::not_found;
  }
  return c;
}

// Re-reads the facts when the store's generation moved (a worker restarted
// and republished its pid) or when nothing was read yet.
void pool_client::refresh() {
  if (store_ && (members_.empty() || store_->generation() != generation_)) {
    if (auto f = read_facts(*store_, o_.pool); f) {
      generation_ = f->generation;
      for (unsigned i = 0; i < f->size; ++i) {
        if (f->members[i].name.empty()) {
          f->members[i].name = member_name(o_.pool, i);
        }
      }
      members_ = std::move(f->members);
      outstanding_.resize(members_.size(), 0);
      return;
    }
  }
  if (members_.empty() && o_.size_if_unpublished > 0) {
    for (unsigned i = 0; i < o_.size_if_unpublished; ++i) {
      members_.push_back({member_name(o_.pool, i), 0});
    }
    outstanding_.assign(members_.size(), 0);
  } else if (members_.empty()) {
    // No facts in this node's store (e.g. a shell without $OTPD_NODE): the
    // runtime dir's name registry still knows the members that are up.
    for (unsigned i = 0; i < 60; ++i) {
      auto pid = rt::whereis(member_name(o_.pool, i));
      if (!pid) {
        break;
      }
      members_.push_back({member_name(o_.pool, i), *pid});
    }
    outstanding_.assign(members_.size(), 0);
  }
}

unsigned pool_client::pick() {
  refresh();
  auto n = static_cast<unsigned>(members_.size());
  switch (o_.strategy) {
    case strategy::random:
      return static_cast<unsigned>(rng_() % n);
    case strategy::round_robin:
      next_ = (next_ + 1) % n;
      return next_;
    case strategy::least_outstanding: {
      // Ties go round-robin, so an idle pool still spreads its load.
      unsigned best = (next_ + 1) % n;
      for (unsigned k = 1; k < n; ++k) {
        unsigned i = (next_ + 1 + k) % n;
        if (outstanding_[i] < outstanding_[best]) {
          best = i;
        }
      }
      next_ = best;
      return best;
    }
  }
  return 0;
}

core::Result<pid_t> pool_client::pid_of(unsigned member) {
  if (members_[member].pid > 0) {
    return members_[member].pid;
  }
  auto p = rt::whereis(members_[member].name);
  if (p) {
    members_[member].pid = *p;
  }
  return p;
}

core::Result<pool_client::pending> pool_client::send(const std::vector<std::string>& argv) {
  return send_to(pick(), argv);
}

core::Result<pool_client::pending> pool_client::send_to(unsigned member,
                                                        const std::vector<std::string>& argv) {
  refresh();
  if (member >= members_.size() || argv.empty()) {
    return errc::invalid_argument;
  }
  std::string body = encode_request(argv);
  // Two tries: the cached pid may belong to a worker that died since; its
  // name then leads to the restarted one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto pid = pid_of(member);
    if (!pid) {
      return pid.error();
    }
    // As runtime::send_request, but posted: calls of one burst leave in one
    // write. The monitor's ref is the call's ref, so the reply or the DOWN
    // answers it, whichever comes first.
    pending p{{*pid, rt::monitor(*pid)}, member, core::deadline::after(o_.timeout)};
    auto sent = rt::post_message(*pid, rt::kind::call, p.id.ref, body);
    if (sent) {
      ++outstanding_[member];
      return p;
    }
    rt::demonitor(p.id.ref, true);
    members_[member].pid = 0;
    if (sent.error() != errc::noproc) {
      return sent.error();
    }
  }
  return errc::noproc;
}

reply_result pool_client::finish(const pending& p, core::Result<rt::message> m) {
  if (p.member < outstanding_.size() && outstanding_[p.member] > 0) {
    --outstanding_[p.member];
  }
  if (!m) {
    if ((m.error() == errc::crashed || m.error() == errc::noproc) && p.member < members_.size() &&
        members_[p.member].pid == p.id.server) {
      members_[p.member].pid = 0;  // look the name up again next time
    }
    return m.error();
  }
  return decode_reply(m->body);
}

reply_result pool_client::await(const pending& p) {
  return finish(p, rt::receive_response(p.id, p.until));
}

core::Result<std::size_t> pool_client::await_any(const std::vector<pending>& ps,
                                                 core::deadline until, reply_result* result) {
  std::size_t hit = ps.size();
  rt::predicate any = [&](const rt::message& m) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      if (rt::answers(m, ps[i].id)) {
        hit = i;
        return true;
      }
    }
    return false;
  };
  auto m = rt::receive(any, until);
  if (!m) {
    return m.error();
  }
  auto r = rt::take_response(std::move(*m), ps[hit].id);
  *result = finish(ps[hit], std::move(r));
  return hit;
}

reply_result pool_client::command_on(unsigned member, const std::vector<std::string>& argv) {
  auto p = send_to(member, argv);
  if (!p) {
    return p.error();
  }
  return await(*p);
}

reply_result pool_client::command(const std::vector<std::string>& argv) {
  return command_on(pick(), argv);
}

std::vector<reply_result> pool_client::pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  std::vector<core::Result<pending>> sent;
  sent.reserve(commands.size());
  for (const auto& c : commands) {
    sent.push_back(send(c));
  }
  std::vector<reply_result> out;
  out.reserve(commands.size());
  for (auto& p : sent) {
    out.push_back(p ? await(*p) : reply_result(p.error()));
  }
  return out;
}

}  // namespace otpd::redis_pool

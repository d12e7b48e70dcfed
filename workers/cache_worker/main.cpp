// cache_worker: the terms cache as a GenServer holding a map (the training's
// TermsCache). Every get is a mailbox call; compare shm_cache, where readers
// go to shared memory directly.
//
//   cast ["put", key, value]            no expiry
//   cast ["put", key, value, ttl_ms]    expires ttl_ms after the put
//   call ["get", key]     -> ["ok", value] | ["error", "not_found"]
//   call ["delete", key]  -> ["ok", true|false]
//   call ["size"]         -> ["ok", n]
//
// Expired entries are invisible to get at once; a periodic evict (every
// --evict-ms, default 1000) reclaims them, as the training's evict loop did.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>

#include <otpd/core/clock.hpp>
#include <otpd/core/log.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/workers/cache_request.hpp>

namespace rt = otpd::runtime;
namespace w = otpd::workers;
using steady = std::chrono::steady_clock;

namespace {

struct entry {
  std::string value;  // the raw msgpack of the value term
  std::optional<steady::time_point> expires;
};

class cache_server final : public rt::gen_server {
 public:
  explicit cache_server(std::chrono::milliseconds evict_every) : evict_every_(evict_every) {}

  otpd::core::Result<void> init() override {
    evict_timer_ = rt::send_after(evict_every_, std::string("evict"));
    return {};
  }

  std::optional<std::string> handle_call(const rt::message& req, const rt::from&) override {
    auto call = w::decode_cache_call(req.body);
    if (!call) {
      return rt::pack(std::make_tuple(std::string("error"), std::string("bad_request")));
    }
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_array(2);
    switch (call->op) {
      case w::cache_op::get: {
        auto it = map_.find(call->key);
        if (it != map_.end() && !expired(it->second, steady::now())) {
          pk.pack(std::string("ok"));
          out.write(it->second.value.data(), it->second.value.size());
        } else {
          pk.pack(std::string("error"));
          pk.pack(std::string("not_found"));
        }
        break;
      }
      case w::cache_op::erase:
        pk.pack(std::string("ok"));
        pk.pack(map_.erase(call->key) > 0);
        break;
      case w::cache_op::size:
        pk.pack(std::string("ok"));
        pk.pack(map_.size());
        break;
    }
    return std::string(out.data(), out.size());
  }

  void handle_cast(const rt::message& req) override {
    auto put = w::decode_cache_cast(req.body);
    if (!put) {
      otpd::core::log_warn("cache_worker: ignored a malformed put");
      return;
    }
    entry e{std::move(put->value), std::nullopt};
    if (put->ttl) {
      e.expires = steady::now() + *put->ttl;
    }
    map_[std::move(put->key)] = std::move(e);
  }

  void handle_info(const rt::message& msg) override {
    if (msg.ref == evict_timer_) {
      auto now = steady::now();
      std::size_t before = map_.size();
      std::erase_if(map_, [now](const auto& kv) { return expired(kv.second, now); });
      if (before != map_.size()) {
        otpd::core::log_debug("cache_worker: evicted {} expired entries", before - map_.size());
      }
      evict_timer_ = rt::send_after(evict_every_, std::string("evict"));
      return;
    }
    gen_server::handle_info(msg);
  }

 private:
  static bool expired(const entry& e, steady::time_point now) {
    return e.expires && *e.expires <= now;
  }

  std::chrono::milliseconds evict_every_;
  rt::ref evict_timer_;
  std::unordered_map<std::string, entry> map_;
};

}  // namespace

int main(int argc, char** argv) {
  otpd::core::set_log_name("cache_worker");
  long evict_ms = 1000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--evict-ms") == 0 && i + 1 < argc) {
      evict_ms = std::atol(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: cache_worker [--evict-ms N]\n");
      return 100;
    }
  }
  cache_server server{std::chrono::milliseconds(evict_ms > 0 ? evict_ms : 1000)};
  return rt::run_server(server);
}

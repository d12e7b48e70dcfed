// hello_worker: a GenServer written against the installed otpd runtime
// (docs/WRITING_WORKERS.md walks through it). Run it under otpd with
// `name: hello` and `readiness: notify`; then, from a shell:
//   otpctl call hello '["hello", "otpd"]'   -> ["ok","hello, otpd"]
//   otpctl cast hello '["greeting", "hi"]'   (no reply)
//   otpctl cast hello '["watch", "stack"]'   monitors the process registered as stack
//   otpctl call hello stats                  -> ["ok",{"calls":..,"casts":..,...}]
// handle_info gets a timer message it sends itself every 100 ms, and the
// DOWN message of each watched process that ends.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include <otpd/core/log.hpp>
#include <otpd/runtime/gen_server.hpp>

namespace rt = otpd::runtime;
using namespace std::chrono_literals;

namespace {

class hello_server final : public rt::gen_server {
 public:
  // Runs before otpd is told the worker is ready: an error here is a failed
  // start, which otpd reports and retries like a crash.
  otpd::core::Result<void> init() override {
    tick_ = rt::send_after(100ms, std::string("tick"));
    return {};
  }

  // A call: the returned body is the reply (rt::pack turns any msgpack-able
  // value into one). Requests from otpctl arrive as msgpack of their JSON.
  std::optional<std::string> handle_call(const rt::message& req, const rt::from&) override {
    ++calls_;
    if (auto hello = req.as<std::tuple<std::string, std::string>>();
        hello && std::get<0>(*hello) == "hello") {
      return rt::pack(std::make_tuple(std::string("ok"), greeting_ + ", " + std::get<1>(*hello)));
    }
    if (auto word = req.as<std::string>(); word && *word == "stats") {
      std::map<std::string, std::uint64_t> stats{
          {"calls", calls_}, {"casts", casts_}, {"downs", downs_}, {"ticks", ticks_}};
      return rt::pack(std::make_tuple(std::string("ok"), stats));
    }
    return rt::pack(std::make_tuple(std::string("error"), std::string("unknown request")));
  }

  // A cast: no reply, the caller does not wait.
  void handle_cast(const rt::message& req) override {
    ++casts_;
    auto c = req.as<std::tuple<std::string, std::string>>();
    if (c && std::get<0>(*c) == "greeting") {
      greeting_ = std::get<1>(*c);
      return;
    }
    if (c && std::get<0>(*c) == "watch") {
      // A DOWN comes when the process ends (at once if there is none).
      rt::monitor(rt::address(std::get<1>(*c)));
      return;
    }
    otpd::core::log_warn("hello_worker: ignored a cast that is not [\"greeting\"|\"watch\", s]");
  }

  // Everything that is neither call nor cast: here our own timer; also DOWN
  // and EXIT messages of monitored and linked processes.
  void handle_info(const rt::message& msg) override {
    if (msg.ref == tick_) {
      ++ticks_;
      tick_ = rt::send_after(100ms, std::string("tick"));
      return;
    }
    if (msg.kind == rt::kind::down) {
      ++downs_;
      otpd::core::log_info("hello_worker: pid {} ended: {}", msg.from, msg.reason().to_string());
      return;
    }
    gen_server::handle_info(msg);  // logs what it does not know
  }

  // On an orderly stop (otpctl stop, otpctl shutdown, SIGTERM).
  void terminate(const otpd::core::exit_reason& reason) override {
    otpd::core::log_info("hello_worker: stopping ({}) after {} calls", reason.to_string(), calls_);
  }

 private:
  std::string greeting_ = "hello";
  rt::ref tick_;
  std::uint64_t calls_ = 0;
  std::uint64_t casts_ = 0;
  std::uint64_t downs_ = 0;
  std::uint64_t ticks_ = 0;
};

}  // namespace

int main() {
  otpd::core::set_log_name("hello_worker");
  hello_server server;
  // Registers the name otpd passes ($OTPD_NAME), runs init, reports
  // readiness on $OTPD_READY_FD, then serves until it is stopped.
  return rt::run_server(server);
}

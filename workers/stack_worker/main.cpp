// stack_worker: the training's Stack as a real worker. Requests (msgpack):
//   cast ["push", term]     pushes any term
//   call ["pop"]            -> ["ok", term] or ["error", "empty"]
//   call ["size"]           -> ["ok", n]
// Run it under otpd (readiness: notify, name: stack) or from spawn_exec.
#include <optional>
#include <string>
#include <vector>

#include <otpd/core/log.hpp>
#include <otpd/runtime/gen_server.hpp>
#include <otpd/workers/stack_request.hpp>

namespace rt = otpd::runtime;
namespace w = otpd::workers;

namespace {

class stack_server final : public rt::gen_server {
 public:
  std::optional<std::string> handle_call(const rt::message& req, const rt::from&) override {
    auto op = w::decode_stack_call(req.body);
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_array(2);
    if (op && *op == w::stack_op::pop) {
      if (items_.empty()) {
        pk.pack(std::string("error"));
        pk.pack(std::string("empty"));
      } else {
        pk.pack(std::string("ok"));
        // The element is kept as the raw msgpack of the pushed term.
        out.write(items_.back().data(), items_.back().size());
        items_.pop_back();
      }
    } else if (op && *op == w::stack_op::size) {
      pk.pack(std::string("ok"));
      pk.pack(items_.size());
    } else {
      pk.pack(std::string("error"));
      pk.pack(std::string("unknown request"));
    }
    return std::string(out.data(), out.size());
  }

  void handle_cast(const rt::message& req) override {
    auto term = w::decode_stack_cast(req.body);
    if (!term) {
      otpd::core::log_warn("stack_worker: ignored a cast that is not [\"push\", term]");
      return;
    }
    items_.push_back(std::move(*term));
  }

 private:
  std::vector<std::string> items_;
};

}  // namespace

int main() {
  otpd::core::set_log_name("stack_worker");
  stack_server server;
  return rt::run_server(server);
}

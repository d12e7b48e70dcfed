// The one translation unit that compiles CLI11 (see cli.hpp). Each add()
// overload instantiates CLI11's add_option for its own type, so --help and
// the error messages name the type as CLI11 does (TEXT, INT, UINT, FLOAT).
#include <utility>

#include <CLI/CLI.hpp>

#include <otpd/core/cli.hpp>

namespace otpd::core::cli {

option option::required() {
  opt_->required();
  return *this;
}

// CLI11 leaves an option of the empty group out of --help.
option option::hidden() {
  opt_->group("");
  return *this;
}

option option::positive() {
  opt_->check(CLI::PositiveNumber);
  return *this;
}

option option::non_negative() {
  opt_->check(CLI::NonNegativeNumber);
  return *this;
}

option option::range(int lo, int hi) {
  opt_->check(CLI::Range(lo, hi));
  return *this;
}

option option::one_of(std::vector<std::string> choices) {
  opt_->check(CLI::IsMember(std::move(choices)));
  return *this;
}

option command::add(const std::string& name, std::string& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, int& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, long& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, long long& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, unsigned& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, unsigned long& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, unsigned long long& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, double& out, const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::add(const std::string& name, std::vector<std::string>& out,
                    const std::string& help) {
  return option(app_->add_option(name, out, help));
}

option command::flag(const std::string& name, bool& out, const std::string& help) {
  return option(app_->add_flag(name, out, help));
}

command command::subcommand(const std::string& name, const std::string& help) {
  return command(app_->add_subcommand(name, help));
}

command command::require_subcommand(int n) {
  app_->require_subcommand(n);
  return *this;
}

command command::on_parsed(std::function<void()> fn) {
  app_->callback(std::move(fn));
  return *this;
}

bool command::parsed() const {
  return static_cast<bool>(*app_);
}

app::app(const std::string& description)
    : command(nullptr), owned_(std::make_unique<CLI::App>(description)) {
  app_ = owned_.get();
}

app::~app() = default;

std::optional<int> app::parse(int argc, const char* const* argv) {
  try {
    owned_->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return owned_->exit(e);
  }
  return std::nullopt;
}

app& app::prefix_command() {
  owned_->prefix_command();
  return *this;
}

std::vector<std::string> app::remaining() const {
  return owned_->remaining();
}

}  // namespace otpd::core::cli

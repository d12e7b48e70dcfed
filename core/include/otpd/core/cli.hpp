#pragma once

// Command lines of otpd's programs, tools and benchmarks: CLI11 behind a
// non-template interface. CLI11 is header-only and compiling its templates
// took 5-7 CPU-seconds at -O2 in every program that included it; here it is
// compiled once, in core/src/cli.cpp, and the programs include only this
// header. Help, error messages and exit codes are CLI11's own.
//
// An app owns the whole command line; option and command are handles into
// it, valid while the app lives. The variables given to add() and flag()
// are written by parse() and must outlive it. Adding a malformed or
// duplicate name throws (CLI11's ConstructionError, a std::exception): a
// programming error, found at setup.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace otpd::core::cli {

// One option, flag or positional argument. Each call adds a rule and
// returns the handle, so rules chain: cmd.add("--port", port).range(0, 65535).
class option {
 public:
  option required();                                // must be given
  option hidden();                                  // left out of --help
  option positive();                                // a number > 0
  option non_negative();                            // a number >= 0
  option range(int lo, int hi);                     // an integer in [lo, hi] (an int option)
  option one_of(std::vector<std::string> choices);  // exactly one of these words

 private:
  friend class command;
  explicit option(CLI::Option* o) noexcept : opt_(o) {}
  CLI::Option* opt_;
};

// A command line or one of its subcommands. A name starting with '-' is an
// option ("-n,--lines" gives both spellings); any other name is a
// positional argument, in the order they are added.
class command {
 public:
  option add(const std::string& name, std::string& out, const std::string& help = {});
  option add(const std::string& name, int& out, const std::string& help = {});
  option add(const std::string& name, long& out, const std::string& help = {});
  option add(const std::string& name, long long& out, const std::string& help = {});
  option add(const std::string& name, unsigned& out, const std::string& help = {});
  option add(const std::string& name, unsigned long& out, const std::string& help = {});
  option add(const std::string& name, unsigned long long& out, const std::string& help = {});
  option add(const std::string& name, double& out, const std::string& help = {});
  // Every value given (a positional one takes the rest of the arguments).
  option add(const std::string& name, std::vector<std::string>& out, const std::string& help = {});
  // out becomes true when the flag is given.
  option flag(const std::string& name, bool& out, const std::string& help = {});

  command subcommand(const std::string& name, const std::string& help = {});
  // Exactly n subcommands when n > 0, up to -n when n < 0, any number
  // (none required) when n == 0.
  command require_subcommand(int n);
  // fn runs once parse() has succeeded, for a subcommand when it was given.
  // An exception fn throws goes out of parse() to the caller as it is.
  command on_parsed(std::function<void()> fn);
  // After parse(): whether this (sub)command was given.
  [[nodiscard]] bool parsed() const;

 protected:
  explicit command(CLI::App* app) noexcept : app_(app) {}
  CLI::App* app_;
};

class app : public command {
 public:
  explicit app(const std::string& description);
  ~app();
  app(const app&) = delete;
  app& operator=(const app&) = delete;
  app(app&&) = delete;
  app& operator=(app&&) = delete;

  // std::nullopt: the program goes on. Otherwise parse() has printed the
  // help (--help; stdout) or the error (stderr), and returns CLI11's exit
  // code for it: 0 after --help, non-zero for an error. Each program maps
  // that to its own usage status.
  [[nodiscard]] std::optional<int> parse(int argc, const char* const* argv);
  // The first positional argument left over after the declared ones, and
  // every argument after it, are not parsed: remaining() returns them.
  app& prefix_command();
  [[nodiscard]] std::vector<std::string> remaining() const;

 private:
  std::unique_ptr<CLI::App> owned_;
};

}  // namespace otpd::core::cli

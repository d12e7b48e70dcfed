#pragma once

#include <stdlib.h>

#include <optional>
#include <string>
#include <system_error>

#include <otpd/runtime/process.hpp>
#include <otpd/testing/testing.hpp>

namespace otpd::testing {

// This process's mailbox for a test: runtime::init() on construction,
// runtime::shutdown() (names unregistered, linked children killed and
// reaped) on destruction, so that each test starts from a closed runtime.
// A test checks ASSERT_TRUE(s.ok()) << s.error().message() first.
// Header-only: only targets that link otpd::runtime include it.
class runtime_session {
 public:
  // A fresh private runtime dir, removed at the end and exported as
  // $OTPD_RUNTIME_DIR while the session lasts (for the programs the test
  // starts that take the runtime dir from the environment).
  runtime_session() : dir_(std::in_place, "otpd-rt") {
    if (const char* old = ::getenv("OTPD_RUNTIME_DIR"); old != nullptr) {
      saved_env_ = old;
    }
    ::setenv("OTPD_RUNTIME_DIR", dir_->path().c_str(), 1);
    init_ = runtime::init({.runtime_dir = dir_->path(), .name = {}});
  }
  // An existing runtime dir, e.g. an otpd_node's rt(); the mailbox is
  // registered under name when it is not empty.
  explicit runtime_session(const std::string& runtime_dir, const std::string& name = {})
      : init_(runtime::init({.runtime_dir = runtime_dir, .name = name})) {}
  ~runtime_session() {
    runtime::shutdown();
    if (dir_) {
      if (saved_env_) {
        ::setenv("OTPD_RUNTIME_DIR", saved_env_->c_str(), 1);
      } else {
        ::unsetenv("OTPD_RUNTIME_DIR");
      }
    }
  }
  runtime_session(const runtime_session&) = delete;
  runtime_session& operator=(const runtime_session&) = delete;
  runtime_session(runtime_session&&) = delete;
  runtime_session& operator=(runtime_session&&) = delete;

  [[nodiscard]] bool ok() const noexcept { return init_.has_value(); }
  [[nodiscard]] std::error_code error() const noexcept { return init_.error(); }

 private:
  std::optional<temp_dir> dir_;
  std::optional<std::string> saved_env_;
  core::Result<void> init_;
};

}  // namespace otpd::testing

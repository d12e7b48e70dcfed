// Every runtime test process gets its own private runtime dir, so tests can
// run in parallel and leave nothing behind.
#include <memory>

#include <gtest/gtest.h>

#include <otpd/testing/runtime_session.hpp>

namespace {
class runtime_env : public ::testing::Environment {
 public:
  void SetUp() override {
    session_ = std::make_unique<otpd::testing::runtime_session>();
    ASSERT_TRUE(session_->ok()) << session_->error().message();
  }
  void TearDown() override { session_.reset(); }

 private:
  std::unique_ptr<otpd::testing::runtime_session> session_;
};
[[maybe_unused]] auto* const env = ::testing::AddGlobalTestEnvironment(new runtime_env);
}  // namespace

// Every runtime test process gets its own private runtime dir, so tests can
// run in parallel and leave nothing behind.
#include <cstdlib>
#include <memory>

#include <gtest/gtest.h>

#include <otpd/runtime/process.hpp>
#include <otpd/testing/testing.hpp>

namespace {
class runtime_env : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = std::make_unique<otpd::testing::temp_dir>("otpd-rt");
    ::setenv("OTPD_RUNTIME_DIR", dir_->path().c_str(), 1);
    auto r = otpd::runtime::init();
    ASSERT_TRUE(r) << r.error().message();
  }
  void TearDown() override {
    otpd::runtime::shutdown();
    dir_.reset();
  }

 private:
  std::unique_ptr<otpd::testing::temp_dir> dir_;
};
[[maybe_unused]] auto* const env = ::testing::AddGlobalTestEnvironment(new runtime_env);
}  // namespace

#include <string>

#include <otpd/core/result.hpp>

namespace otpd::core {

const char* to_string(errc e) noexcept {
  switch (e) {
    case errc::ok:
      return "ok";
    case errc::timeout:
      return "timed out";
    case errc::noproc:
      return "no such process";
    case errc::closed:
      return "connection closed by peer";
    case errc::malformed:
      return "malformed data";
    case errc::too_large:
      return "too large";
    case errc::would_block:
      return "would block";
    case errc::exec_failed:
      return "exec failed";
    case errc::start_failed:
      return "start failed";
    case errc::crashed:
      return "process crashed";
    case errc::not_found:
      return "not found";
    case errc::already_exists:
      return "already exists";
    case errc::invalid_argument:
      return "invalid argument";
    case errc::table_full:
      return "table full";
    case errc::access_denied:
      return "access denied";
    case errc::disconnected:
      return "disconnected";
    case errc::protocol:
      return "protocol error";
    case errc::shutting_down:
      return "shutting down";
    case errc::busy:
      return "busy";
    case errc::corrupt:
      return "corrupt data";
  }
  return "unknown error";
}

namespace {
class otpd_category_impl final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "otpd"; }
  [[nodiscard]] std::string message(int ev) const override {
    return to_string(static_cast<errc>(ev));
  }
};
}  // namespace

const std::error_category& otpd_category() noexcept {
  static const otpd_category_impl category;
  return category;
}

}  // namespace otpd::core

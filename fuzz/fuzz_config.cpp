// The config loader on arbitrary text: an error with a message, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include <otpd/supervisor/config.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string message;
  std::ignore = otpd::supervisor::parse_config(text, "fuzz.yaml", message);
  return 0;
}

// The config loader on arbitrary text: an error with a message, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include <otpd/supervisor/config.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto r = otpd::supervisor::parse_config(text, "fuzz.yaml");
  if (!r) {
    std::ignore = r.message();  // every error has a message to give
  }
  return 0;
}

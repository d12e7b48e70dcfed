#include <cstdio>
#include <exception>

#include <otpd/core/main.hpp>

namespace otpd::core {

int guarded_main(int argc, char** argv, int (*run)(int, char**)) {
  const char* self = argc > 0 ? argv[0] : "otpd";
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: unexpected error: %s\n", self, e.what());
  } catch (...) {
    std::fprintf(stderr, "%s: unexpected error\n", self);
  }
  return 111;
}

}  // namespace otpd::core

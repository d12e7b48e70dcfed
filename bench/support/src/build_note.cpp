// Compiled into every bench program (bench/support/CMakeLists.txt): before
// its table, a program built in a development build (build/, -Og) or a
// Debug build says that its figures are not those of otpd as it ships, and
// where those come from. A warning, not a refusal: the programs also serve
// to try a change quickly.

#include <cstdio>
#include <string_view>

namespace {

[[maybe_unused]] const bool g_bench_build_type_noted = [] {
  constexpr std::string_view type = OTPD_BUILD_TYPE;
  if (type != "RelWithDebInfo" && type != "Release") {
    std::fprintf(stderr,
                 "bench: built as %.*s, not as otpd ships (RelWithDebInfo, -O2): its figures are "
                 "not comparable with docs/BENCHMARKS.md; scripts/bench.sh runs it from "
                 "build-release/\n",
                 static_cast<int>(type.size()), type.data());
  }
  return true;
}();

}  // namespace

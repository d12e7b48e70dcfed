#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang in build-fuzz/ and runs each
# for SECONDS (default 60) from its seed corpus in fuzz/corpus/<target>/.
# New inputs go to build-fuzz/corpus/<target>/ (the seeds stay untouched);
# a crash leaves build-fuzz/crash-<target>-* and makes the script fail.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_frame fuzz_ring fuzz_cache_request fuzz_stack_request fuzz_redis_codec fuzz_config
    fuzz_shm_segment fuzz_control_request)
fi

bash scripts/setup.sh fuzz || exit 1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
# The libraries get coverage instrumentation (fuzzer-no-link) and the
# sanitizers; only the fuzz targets link libFuzzer's main.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" -DOTPD_SANITIZE=address,undefined \
  -DOTPD_FUZZ=ON -DOTPD_BUILD_TESTS=OFF -DOTPD_BUILD_BENCH=OFF >/dev/null || exit 1
nice ninja -C build-fuzz "${targets[@]}" || exit 1

failed=()
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  # -rss_limit_mb: a decoder that bloats on some input is a finding too.
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "build-fuzz/bin/$t" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$t-" \
    "build-fuzz/corpus/$t" "fuzz/corpus/$t" >"build-fuzz/$t.log" 2>&1; then
    failed+=("$t")
    tail -40 "build-fuzz/$t.log"
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
    "build-fuzz/$t.log" | tr '\n' ' '
  echo
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (inputs in build-fuzz/crash-*)"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a crash"

#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: the optimised build, then the
# AddressSanitizer + UndefinedBehaviorSanitizer build. Exit status 0 = all green.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs=$(nproc)
run_suite() {
  local dir=$1
  shift
  echo "== build $dir"
  bash scripts/build.sh "$dir" -DOTPD_WERROR=ON "$@"
  echo "== test $dir"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
}

run_suite build
# Sanitizers slow everything down; tests scale their timeouts by this.
export OTPD_TEST_TIMEOUT_MULTIPLIER=${OTPD_TEST_TIMEOUT_MULTIPLIER:-4}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite build-asan -DOTPD_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
echo "== all tests passed"

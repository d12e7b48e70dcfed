#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite twice: the development build
# (build/, -Og with assertions: the same configuration scripts/demo.sh uses,
# so every object the demo built is reused; its package test builds the -O2
# release build beside it), then the AddressSanitizer +
# UndefinedBehaviorSanitizer build (build-asan/, which also treats compiler
# warnings as errors).
# Both passes run even when the first fails; the exit status says which failed.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
say() { echo "test [$((SECONDS - start))s]: $*"; }

say "checking packages (scripts/setup.sh test)"
bash scripts/setup.sh test || exit 1

jobs=$(nproc)
run_suite() {
  local dir=$1
  shift
  say "building $dir"
  bash scripts/build.sh "$dir" -DOTPD_BUILD_TESTS=ON "$@" || return 1
  say "testing $dir"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
}

failed=()
run_suite build || failed+=("development (build/)")
# Sanitizers slow everything down; tests scale their timeouts by this.
(
  export OTPD_TEST_TIMEOUT_MULTIPLIER=${OTPD_TEST_TIMEOUT_MULTIPLIER:-4}
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  run_suite build-asan -DOTPD_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug \
    -DOTPD_WERROR=ON
) || failed+=("ASan+UBSan (build-asan/)")

if ((${#failed[@]})); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all tests passed (development build and ASan+UBSan)"

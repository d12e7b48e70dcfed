#!/usr/bin/env bash
# Configures and builds otpd.
#   scripts/build.sh [DIR] [CMAKE_ARGS...]     DIR defaults to build/
# The build type is Dev (-Og, the development build: scripts/demo.sh and
# scripts/test.sh) unless CMAKE_ARGS name another, as scripts/package.sh and
# scripts/bench.sh do (RelWithDebInfo, -O2). cmake/otpd.cmake says why.
# $OTPD_TARGETS (space-separated) builds only those targets instead of all.
# Uses Ninja and ccache when present. ccache is told the checkout is its base
# directory, so a second checkout (or the same one moved) reuses the objects.
# An existing DIR keeps the generator it was made with.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true

args=(-DCMAKE_BUILD_TYPE=Dev)
if [[ -f "$dir/CMakeCache.txt" ]]; then
  generator=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$dir/CMakeCache.txt")
else
  generator=""
  if command -v ninja >/dev/null 2>&1; then
    generator=Ninja
  fi
fi
if [[ -n "$generator" ]]; then
  args+=(-G "$generator")
fi
if command -v ccache >/dev/null 2>&1; then
  # Not ccache's depend mode, although it would spare a first build one
  # preprocessor run per object (about 4 CPU-s for the demo): the unity
  # batches name their sources by absolute path, so only the preprocessor
  # mode's hash, with paths relative to CCACHE_BASEDIR, matches across
  # checkouts.
  launcher="env;CCACHE_BASEDIR=$PWD;CCACHE_NOHASHDIR=1;ccache"
  args+=("-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher" "-DCMAKE_C_COMPILER_LAUNCHER=$launcher")
fi
cmake -S . -B "$dir" "${args[@]}" "$@" >/dev/null

targets=()
if [[ -n "${OTPD_TARGETS:-}" ]]; then
  read -r -a list <<<"$OTPD_TARGETS"
  for t in "${list[@]}"; do
    targets+=(--target "$t")
  done
fi
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"

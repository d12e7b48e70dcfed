#!/usr/bin/env bash
# Builds otpd as it ships (RelWithDebInfo: -O2 with line tables, in
# build-release/) and runs one benchmark there: the build whose figures
# docs/BENCHMARKS.md records.
#   scripts/bench.sh NAME [ARGS...]   e.g. scripts/bench.sh restart --containment 100
#   scripts/bench.sh                  lists the benchmarks
# build/ is the development build (-Og, scripts/build.sh's default): its
# bench_* programs run, but say that they measure a development build.
# The anchors (supervisord, s6, runit, Erlang): OTPD_SETUP_BENCH=1 bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

names=()
for dir in bench/*/; do
  name=$(basename "$dir")
  [[ $name == support ]] || names+=("$name")
done
if (($# == 0)); then
  echo "usage: scripts/bench.sh NAME [ARGS...]; NAME is one of: ${names[*]}"
  exit 2
fi
name=$1
shift
if [[ " ${names[*]} " != *" $name "* ]]; then
  echo "bench: no benchmark '$name'; one of: ${names[*]}" >&2
  exit 2
fi

echo "bench: building build-release/ (RelWithDebInfo)" >&2
bash scripts/build.sh build-release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTPD_BUILD_BENCH=ON \
  -DOTPD_BUILD_TESTS=OFF >&2
exec "build-release/bin/bench_$name" "$@"

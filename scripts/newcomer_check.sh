#!/usr/bin/env bash
# What a new user does first, checked end to end: clone the repository into a
# private (0700) directory whose path has a space, run scripts/demo.sh there,
# wait until every child of the demo tree is `running` (otpctl status), then
# shut the tree down in order, then configure the clone as a machine without
# GoogleTest would (the demo must not need it). Prints how long each step took.
#   scripts/newcomer_check.sh [REPO]     REPO defaults to this checkout
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${1:-$PWD}
start=$SECONDS
say() { echo "newcomer [$((SECONDS - start))s]: $*"; }

top=$(mktemp -d)  # mode 0700, as a home directory or a mktemp dir is
chmod 700 "$top"
here="$top/new user/otpd"
rt="$top/rt"
otpd_pid=""
cleanup() {
  if [[ -n "$otpd_pid" ]] && kill -0 "$otpd_pid" 2>/dev/null; then
    kill -TERM "$otpd_pid" 2>/dev/null || true
    wait "$otpd_pid" 2>/dev/null || true
  fi
  rm -rf "$top"
}
trap cleanup EXIT

say "cloning $repo into '$here'"
git clone -q "$repo" "$here"
say "running scripts/demo.sh"
OTPD_RUNTIME_DIR="$rt" bash "$here/scripts/demo.sh" >"$top/demo.log" 2>&1 &
otpd_pid=$!

otpctl="$here/build/bin/otpctl"
all_running() {
  [[ -x "$otpctl" ]] || return 1
  local json
  json=$(OTPD_RUNTIME_DIR="$rt" "$otpctl" status --json 2>/dev/null) || return 1
  /usr/bin/python3 -c '
import json, sys
def leaves(n):
    for c in n.get("children", []):
        if "children" in c:
            yield from leaves(c)
        else:
            yield c
kids = list(leaves(json.loads(sys.argv[1])))
sys.exit(0 if kids and all(c["state"] == "running" for c in kids) else 1)
' "$json"
}
deadline=$((SECONDS + ${OTPD_NEWCOMER_TIMEOUT:-900}))
until all_running; do
  if ! kill -0 "$otpd_pid" 2>/dev/null; then
    say "FAILED: the demo exited before its tree was running; its output:"
    cat "$top/demo.log"
    exit 1
  fi
  if ((SECONDS > deadline)); then
    say "FAILED: the demo tree was not running in time; its output:"
    cat "$top/demo.log"
    exit 1
  fi
  sleep 0.2
done
say "every child of the demo tree is running:"
OTPD_RUNTIME_DIR="$rt" "$otpctl" tree
OTPD_RUNTIME_DIR="$rt" "$otpctl" shutdown >/dev/null
status=0
wait "$otpd_pid" || status=$?
otpd_pid=""
if ((status != 0)); then
  say "FAILED: otpd exited with status $status after shutdown; its output:"
  cat "$top/demo.log"
  exit 1
fi
say "the tree shut down in order"
# A machine set up with `scripts/setup.sh demo` has no GoogleTest: the
# demo's configuration must not need it (the benchmarks, built by default,
# share the tests' support folder).
say "configuring the clone as a machine without GoogleTest would"
if ! cmake -S "$here" -B "$top/no-gtest" -G Ninja -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON \
  >"$top/no-gtest.log" 2>&1; then
  say "FAILED: the build does not configure without GoogleTest:"
  cat "$top/no-gtest.log"
  exit 1
fi
say "the newcomer path works"

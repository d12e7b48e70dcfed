#!/usr/bin/env bash
# Sets up, builds and runs the demo supervision tree (configs/demo.yaml) with
# otpd in the foreground. Builds only what the demo runs (no tests, no
# benchmarks); scripts/test.sh later reuses every object built here.
#   In another shell: OTPD_RUNTIME_DIR=/tmp/otpd-demo build/bin/otpctl tree
# Extra arguments go to otpd (e.g. --log-format json).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
say() { echo "demo [$((SECONDS - start))s]: $*"; }

say "checking packages (scripts/setup.sh demo)"
bash scripts/setup.sh demo
say "building otpd, the tree's workers, otpd-web, otpctl and otp-redis into build/bin (-Og development build)"
OTPD_TARGETS="otpd otpctl otp-redis stack_worker redis_worker otpd-web" \
  bash scripts/build.sh build
export OTPD_RUNTIME_DIR=${OTPD_RUNTIME_DIR:-/tmp/otpd-demo}
say "starting otpd configs/demo.yaml (Ctrl-C stops the tree in order)"
say "try, in another shell: OTPD_RUNTIME_DIR=$OTPD_RUNTIME_DIR build/bin/otpctl tree"
exec build/bin/otpd configs/demo.yaml "$@"

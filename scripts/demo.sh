#!/usr/bin/env bash
# Runs otpd in the foreground on configs/demo.yaml.
# Programs in the config are bare names: build/bin comes first in PATH, so
# otpd_test_child, stack_worker, etc. resolve to the freshly built ones.
# In another shell: OTPD_RUNTIME_DIR=/tmp/otpd-demo build/bin/otpctl tree
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
export PATH="$PWD/build/bin:$PATH"
export OTPD_RUNTIME_DIR=${OTPD_RUNTIME_DIR:-/tmp/otpd-demo}
echo "demo: runtime dir $OTPD_RUNTIME_DIR; try: OTPD_RUNTIME_DIR=$OTPD_RUNTIME_DIR build/bin/otpctl tree"
exec otpd configs/demo.yaml "$@"

#!/usr/bin/env bash
# otpd-web in a real browser: Debian's chromium, headless, driven by
# puppeteer-core (npm, installed into a test-local node_modules). Fails, never
# skips, when chromium, node or npm is missing: scripts/setup.sh test
# installs them.
#   observer_browser_test.sh SOURCE_DIR BIN_DIR WORK_DIR [SCREENSHOT]
set -uo pipefail
src=$1 bin=$2 work=$3 shot=${4:-}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
chromium=$(command -v chromium || command -v chromium-browser || true)
[[ -n $chromium ]] || fail "chromium is not installed (scripts/setup.sh test)"
command -v node >/dev/null || fail "node is not installed (scripts/setup.sh test)"
command -v npm >/dev/null || fail "npm is not installed (scripts/setup.sh test)"

# puppeteer-core, pinned, in WORK_DIR/node_modules (kept between runs).
mkdir -p "$work"
if [[ ! -f $work/node_modules/puppeteer-core/package.json ]]; then
  (cd "$work" && npm install --no-audit --no-fund --no-save --loglevel=error \
    puppeteer-core@24.9.0 >npm.log 2>&1) || {
    cat "$work/npm.log" >&2
    fail "npm could not install puppeteer-core"
  }
fi

tmp=$(mktemp -d /tmp/otpd-browser.XXXXXX)
otpd_pid=
cleanup() {
  if [[ -n $otpd_pid ]]; then
    kill -TERM "$otpd_pid" 2>/dev/null
    for _ in $(seq 1 100); do
      kill -0 "$otpd_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$otpd_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A tree with nesting, otpd-web as a worker, and a worker with three
# instances (one group on the page).
child=$bin/otpd_test_child
cat >"$tmp/otpd.yaml" <<YAML
node:
  name: browser
supervisor:
  strategy: one_for_one
  children:
    - {id: alpha, command: [$child, sleep]}
    - {id: beta, command: [$child, sleep]}
    - id: services
      strategy: rest_for_one
      children:
        - {id: db, command: [$child, sleep]}
        - {id: api, command: [$child, sleep]}
    - {id: web, command: [$bin/otpd-web, --port, "0"], readiness: notify}
    - {id: pool, command: [$child, sleep], instances: 3}
YAML
"$bin/otpd" --runtime-dir "$tmp/rt" "$tmp/otpd.yaml" >"$tmp/otpd.log" 2>&1 &
otpd_pid=$!
url=
for _ in $(seq 1 $((100 * ${OTPD_TEST_TIMEOUT_MULTIPLIER:-1}))); do
  url=$("$bin/otpctl" --runtime-dir "$tmp/rt" web 2>/dev/null) && break
  kill -0 "$otpd_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $url ]] || {
  cat "$tmp/otpd.log" >&2
  fail "otpd-web did not come up"
}

cd "$work" && OTPCTL="$bin/otpctl" RUNTIME_DIR="$tmp/rt" CHROMIUM="$chromium" \
  TIMEOUT_MULTIPLIER="${OTPD_TEST_TIMEOUT_MULTIPLIER:-1}" \
  node "$src/tests/integration/observer_browser_test.mjs" "$url" "$shot"
rc=$?
((rc == 0)) || {
  tail -20 "$tmp/otpd.log" >&2
  exit "$rc"
}

#!/usr/bin/env bash
# Installs the Debian packages otpd needs, and only those:
#   scripts/setup.sh demo     build and run otpd (scripts/demo.sh)
#   scripts/setup.sh test     the above, plus what the tests need (default)
#   scripts/setup.sh fuzz     the above, plus clang and libFuzzer (scripts/fuzz.sh)
# OTPD_SETUP_BENCH=1 adds the anchors that bench/ measures side by side.
# Quick when everything is present. Runs as root, or as a user with sudo.
set -euo pipefail

profile=${1:-test}
demo_packages=(
  build-essential cmake pkg-config ninja-build ccache
  libuv1-dev libhiredis-dev libboost-dev
  libmsgpack-cxx-dev libyaml-cpp-dev libcli11-dev libfmt-dev nlohmann-json3-dev
  redis-server
  libcpp-httplib-dev prometheus-cpp-dev
)
test_packages=(
  git libgtest-dev libgmock-dev redis-tools procps psmisc util-linux clang-format
  dpkg-dev lintian
  scdoc python3-yaml zsh systemd
  tmux python3-prometheus-client chromium
)
# -fsanitize=fuzzer links libclang-rt; CI runs a short fuzz smoke after the
# tests (.ci/run), so the test profile includes these.
fuzz_packages=(clang libclang-rt-14-dev libfuzzer-14-dev)
bench_packages=(supervisor s6 runit erlang-base)

want=("${demo_packages[@]}")
case "$profile" in
  demo) ;;
  test | fuzz) want+=("${test_packages[@]}" "${fuzz_packages[@]}") ;;
  *)
    echo "usage: scripts/setup.sh [demo|test|fuzz]" >&2
    exit 100
    ;;
esac
if [[ "${OTPD_SETUP_BENCH:-0}" == 1 ]]; then
  want+=("${bench_packages[@]}")
fi

# The observer's browser test drives chromium with puppeteer-core from npm.
# npm: Debian's package, unless a node.js that brings its own npm is there.
if [[ "$profile" != demo ]] && ! command -v npm >/dev/null 2>&1; then
  want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#want[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

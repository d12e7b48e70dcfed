#!/usr/bin/env bash
# Installs every Debian package otpd needs to build, test and benchmark.
# Quick when everything is present. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libuv1-dev libhiredis-dev libboost-dev
  libmsgpack-cxx-dev libyaml-cpp-dev libcli11-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  redis-server redis-tools
  procps psmisc util-linux clang-format
)
# Anchors measured side by side by bench/ (not needed by the tests).
bench_packages=(supervisor s6 runit erlang-base)

want=("${packages[@]}")
if [[ "${OTPD_SETUP_BENCH:-0}" == 1 ]]; then
  want+=("${bench_packages[@]}")
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
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${missing[@]}"

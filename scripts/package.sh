#!/usr/bin/env bash
# Builds the Debian package otpd_<version>_amd64.deb with CPack.
#   scripts/package.sh [DIR] [CMAKE_ARGS...]     DIR defaults to build-deb/
# DIR is a release build (RelWithDebInfo: -O2) for the prefix /usr (so the
# example config goes to /etc/otpd) without tests or benchmarks; the .deb
# lands in DIR/dist/ and its path is the last line printed. Dependencies come
# from dpkg-shlibdeps.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-deb}
shift || true

command -v dpkg-shlibdeps >/dev/null 2>&1 ||
  { echo "package: dpkg-shlibdeps missing (scripts/setup.sh test installs dpkg-dev)" >&2; exit 1; }
bash scripts/build.sh "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DOTPD_BUILD_TESTS=OFF -DOTPD_BUILD_BENCH=OFF "$@" >&2
rm -rf "$dir/dist"
(cd "$dir" && cpack -G DEB >&2)
deb=$(find "$dir/dist" -maxdepth 1 -name 'otpd_*.deb' -print -quit)
[[ -n $deb ]] || { echo "package: cpack made no otpd_*.deb" >&2; exit 1; }
realpath "$deb"

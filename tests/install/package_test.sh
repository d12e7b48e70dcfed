#!/usr/bin/env bash
# Builds the .deb (scripts/package.sh), runs lintian on it (errors fail the
# test), installs it (dpkg -i as root, else dpkg -x into a temp root), checks
# and runs the packaged /etc/otpd/otpd.yaml, then removes it without a trace.
#   tests/install/package_test.sh <source dir> <package build dir> [CMAKE_ARGS...]
# $OTPD_PACKAGE_DEB names an already built .deb to test instead.
set -euo pipefail

src=$(realpath "$1")
pkg_build=$2
shift 2
here=$(dirname "$(realpath "$0")")
# shellcheck source=tests/install/node.sh
. "$here/node.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/otpd-package.XXXXXX")
installed=0
cleanup() {
  node_stop >/dev/null 2>&1 || true
  if ((installed)); then
    dpkg --purge otpd >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

deb=${OTPD_PACKAGE_DEB:-}
if [[ -z $deb ]]; then
  deb=$(bash "$src/scripts/package.sh" "$pkg_build" "$@" 2>"$tmp/package.log" | tail -n 1) ||
    node_fail "scripts/package.sh: $(tail -n 30 "$tmp/package.log")"
fi
echo "package: $deb ($(stat -c %s "$deb") bytes)"

if command -v lintian >/dev/null 2>&1; then
  lintian --fail-on error "$deb" | tee "$tmp/lintian.log" || node_fail "lintian reported errors"
else
  echo "package: lintian missing, not run (scripts/setup.sh test installs it)"
fi

# dpkg -i also runs postinst and postrm; it needs root and no otpd installed already.
if [[ $(id -u) -eq 0 ]] && ! dpkg-query -W otpd >/dev/null 2>&1 &&
  [[ ${OTPD_PACKAGE_TEST_EXTRACT:-0} != 1 ]]; then
  installed=1
  dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || node_fail "dpkg -i: $(cat "$tmp/dpkg.log")"
  getent passwd otpd >/dev/null || node_fail "postinst created no otpd user"
  root=
else
  dpkg -x "$deb" "$tmp/root"
  root=$tmp/root
fi

bin=$root/usr/bin
conf=$root/etc/otpd/otpd.yaml
"$bin/otpd" --check "$conf" >"$tmp/check.log" 2>&1 || node_fail "otpd --check: $(cat "$tmp/check.log")"
node_start "$bin" "$conf" "$tmp"
node_wait_running stack
node_wait_running cache
got=$("$bin/otpctl" call stack size) || node_fail "otpctl call stack size failed"
[[ $got == '["ok",0]' ]] || node_fail "otpctl call stack size: got $got"
node_stop || node_fail "otpd did not shut down cleanly"

if ((installed)); then
  dpkg --purge otpd >"$tmp/dpkg.log" 2>&1 || node_fail "dpkg --purge: $(cat "$tmp/dpkg.log")"
  installed=0
  left=$(dpkg -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | while read -r f; do
    [[ -f $f ]] && echo "$f"
  done || true)
  [[ -z $left ]] || node_fail "left behind after purge: $left"
  [[ ! -e /etc/otpd ]] || node_fail "/etc/otpd left behind after purge"
  ! getent passwd otpd >/dev/null || node_fail "otpd user left behind after purge"
  ! getent group otpd >/dev/null || node_fail "otpd group left behind after purge"
fi
echo "package test: ok"

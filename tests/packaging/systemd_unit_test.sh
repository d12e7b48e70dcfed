#!/usr/bin/env bash
# packaging/otpd.service passes `systemd-analyze verify`, with its programs
# pointed at this build (verify checks that ExecStart's file is executable).
#   systemd_unit_test.sh SOURCE_DIR OTPD
# Exit 77 (skipped) where systemd-analyze is not installed.
set -euo pipefail
src=$1 otpd=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze not installed: skipped"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Quoted: the build may sit in a path with a space.
sed "s|/usr/bin/otpd|\"$otpd\"|g" "$src/packaging/otpd.service" >"$dir/otpd.service"
# --man=no: the pages are installed with the package, not on this machine.
out=$(systemd-analyze verify --man=no "$dir/otpd.service" 2>&1) || {
  echo "$out" >&2
  exit 1
}
# verify only warns about some mistakes (an unknown key, a bad value).
if [[ -n $out ]]; then
  echo "$out" >&2
  exit 1
fi
# shellcheck disable=SC2016  # $MAINPID is for systemd, not for this shell
for want in Type=notify NotifyAccess=main Delegate=yes KillMode=mixed 'ExecReload=/bin/kill -HUP $MAINPID' \
  RuntimeDirectory=otpd Environment=OTPD_RUNTIME_DIR=/run/otpd Restart=on-failure \
  'ExecStart=/usr/bin/otpd /etc/otpd/otpd.yaml'; do
  grep -qxF "$want" "$src/packaging/otpd.service" || {
    echo "otpd.service lacks $want" >&2
    exit 1
  }
done
if grep -q '^NoNewPrivileges' "$src/packaging/otpd.service"; then
  echo "otpd.service sets NoNewPrivileges: children could not switch user" >&2
  exit 1
fi
echo "otpd.service: ok"

#!/usr/bin/env bash
# The bash completion of otpctl: commands, options, signals, and child paths
# from a fake otpctl, then from a real otpd through `otpctl paths`; then the
# zsh completion against the same otpd (where zsh is installed).
#   completion_test.sh SOURCE_DIR OTPD OTPCTL
set -uo pipefail
export LC_ALL=C  # one sort order for the expected lists
src=$1 otpd=$2 real_otpctl=$3
# shellcheck source=/dev/null
source "$src/packaging/completion/otpctl.bash"

failures=0
# complete WORD... : COMPREPLY for the command line whose last word is the
# one being completed (give "" to complete an empty word).
complete_line() {
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE="$*"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _otpctl
}
# expect "EXPECTED, space-separated and sorted" WORD...
expect() {
  local want=$1
  shift
  complete_line "$@"
  local got
  got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd' ')
  if [[ $got != "$want" ]]; then
    echo "FAIL: otpctl completion of [$*]: got [$got], want [$want]" >&2
    failures=$((failures + 1))
  fi
}
expect_contains() {
  local want=$1
  shift
  complete_line "$@"
  if ! printf '%s\n' "${COMPREPLY[@]}" | grep -qx -- "$want"; then
    echo "FAIL: otpctl completion of [$*] lacks $want: [${COMPREPLY[*]}]" >&2
    failures=$((failures + 1))
  fi
}

# Commands and options, without a daemon.
expect "reexec reload reopen-logs restart" otpctl re
expect "start start-child status stop" otpctl --json st
expect "--help --json --runtime-dir" otpctl --
expect "--follow --help --json -f" otpctl events -
expect "--timeout" otpctl call --t
expect "--binary" otpctl reexec --b
expect_contains TERM otpctl kill -s T
expect_contains SIGKILL otpctl kill --signal SIGK
expect_contains tree otpctl ""

# Child paths, from a stand-in for `otpctl paths`.
# shellcheck disable=SC2317  # called by the completion, not here
otpctl() {
  [[ ${*: -1} == paths ]] || return 1
  printf '%s\n' a services/ services/api services/db jobs/ jobs/child.1
}
expect "services services/api services/db" otpctl restart s
expect "a jobs jobs/child.1 services services/api services/db" otpctl stop ""
expect "a jobs/child.1 services/api services/db" otpctl kill -s TERM ""
expect "/ jobs services" otpctl start-child ""
expect "" otpctl start-child jobs ""
expect "jobs/child.1" otpctl terminate-child jobs ""
expect "a jobs services" otpctl terminate-child / ""
expect "" otpctl call ""
unset -f otpctl

# A real otpd: the paths come from its status, through --runtime-dir.
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/tree.yaml" <<'EOF'
supervisor:
  strategy: one_for_one
  children:
    - id: web
      command: [sleep, "600"]
    - id: services
      strategy: rest_for_one
      children:
        - id: db
          command: [sleep, "600"]
EOF
OTPD_RUNTIME_DIR='' "$otpd" --runtime-dir "$dir/run" "$dir/tree.yaml" 2>"$dir/otpd.log" &
pid=$!
for _ in $(seq 100); do
  "$real_otpctl" --runtime-dir "$dir/run" paths 2>/dev/null | grep -qx services/db && break
  sleep 0.05
done
expect "services services/db web" "$real_otpctl" --runtime-dir "$dir/run" restart ""
# bash splits --runtime-dir=DIR at '=' (COMP_WORDBREAKS).
expect "services/db" "$real_otpctl" --runtime-dir = "$dir/run" terminate-child services ""

# The zsh completion, in an interactive zsh, against the same otpd: WORDS must
# all be offered, and NOT none of them.
#   expect_zsh LINE WORDS [NOT]
expect_zsh() {
  local shown w
  shown=" $(zsh -f "$src/tests/packaging/zsh_complete.zsh" "$src/packaging/completion" \
    "$(dirname "$real_otpctl")" "$dir/run" "$1" |
    sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | tr -s '\r\n\t' '   ') "
  for w in $2; do
    [[ $shown == *" $w "* ]] || {
      echo "FAIL: zsh completion of [$1] lacks $w: [$shown]" >&2
      failures=$((failures + 1))
    }
  done
  for w in ${3:-}; do
    [[ $shown != *" $w "* ]] || {
      echo "FAIL: zsh completion of [$1] offers $w: [$shown]" >&2
      failures=$((failures + 1))
    }
  done
}
if command -v zsh >/dev/null; then
  expect_zsh "otpctl re" "reexec reload reopen-logs restart" "status"
  expect_zsh "otpctl kill " "web services/db" "services"
  expect_zsh "otpctl start-child " "/ services" "web"
  expect_zsh "otpctl terminate-child services " "services/db" "web"
fi
"$real_otpctl" --runtime-dir "$dir/run" shutdown >/dev/null

if command -v zsh >/dev/null && ! zsh -n "$src/packaging/completion/_otpctl"; then
  echo "FAIL: packaging/completion/_otpctl does not parse" >&2
  failures=$((failures + 1))
fi

if ((failures > 0)); then
  echo "otpd log:" >&2
  cat "$dir/otpd.log" >&2
  exit 1
fi
echo "otpctl completion (bash, zsh): ok"

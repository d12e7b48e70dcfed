# shellcheck shell=bash
# Shared by the install and package tests: run an otpd node from an installed
# bin/ in a private runtime dir, wait for its children, and stop it.
#   node_start <bin dir> <config> <work dir>   sets node_pid, exports OTPD_RUNTIME_DIR
#   node_wait_running <id> [timeout s]         until `otpctl status` shows <id> running
#   node_stop                                   `otpctl shutdown`, then waits for otpd

node_start() {
  node_bin=$1
  export OTPD_RUNTIME_DIR=$3/run
  "$node_bin/otpd" --runtime-dir "$OTPD_RUNTIME_DIR" "$2" >"$3/otpd.log" 2>&1 &
  node_pid=$!
  node_log=$3/otpd.log
}

node_fail() {
  echo "FAIL: $*" >&2
  if [[ -n ${node_log:-} && -f $node_log ]]; then
    echo "--- otpd log" >&2
    cat "$node_log" >&2
  fi
  exit 1
}

node_wait_running() {
  local id=$1 limit=$((${2:-10} * 10))
  for ((i = 0; i < limit; i++)); do
    if "$node_bin/otpctl" status 2>/dev/null | grep -Eq "^/?$id +running "; then
      return 0
    fi
    kill -0 "$node_pid" 2>/dev/null || node_fail "otpd exited before $id was running"
    sleep 0.1
  done
  "$node_bin/otpctl" status >&2 || true
  node_fail "$id not running after ${2:-10} s"
}

node_stop() {
  [[ -n ${node_pid:-} ]] || return 0
  if kill -0 "$node_pid" 2>/dev/null; then
    "$node_bin/otpctl" shutdown >/dev/null || kill "$node_pid" 2>/dev/null || true
  fi
  local rc=0
  wait "$node_pid" || rc=$?
  node_pid=
  return "$rc"
}

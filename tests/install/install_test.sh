#!/usr/bin/env bash
# Installs the build into a temp prefix, builds examples/hello_worker against
# the INSTALLED package (find_package(otpd), and once more with otpd.pc), runs
# it under the installed otpd and talks to it with the installed otpctl.
#   tests/install/install_test.sh <build dir> <source dir>
set -euo pipefail

build=$(realpath "$1")
src=$(realpath "$2")
here=$(dirname "$(realpath "$0")")
# shellcheck source=tests/install/node.sh
. "$here/node.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/otpd-install.XXXXXX")
trap 'node_stop >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

# A build for the prefix /usr installs its config to /etc whatever --prefix says.
if grep -qx 'CMAKE_INSTALL_PREFIX:PATH=/usr' "$build/CMakeCache.txt"; then
  node_fail "$build is configured for the prefix /usr (a package build); use another build"
fi
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  node_fail "cmake --install: $(cat "$tmp/install.log")"
for f in bin/otpd bin/otpctl bin/otp-table bin/otp-redis bin/stack_worker bin/cache_worker \
  bin/shm_cache_owner bin/redis_worker include/otpd/runtime/gen_server.hpp \
  include/otpd/core/result.hpp include/otpd/shm_table/table.hpp etc/otpd/otpd.yaml \
  share/doc/otpd/copyright; do
  [[ -e $prefix/$f ]] || node_fail "not installed: $f"
done
libdir=$(dirname "$(find "$prefix" -name libotpd_runtime.a)")
[[ -f $libdir/cmake/otpd/otpdConfig.cmake && -f $libdir/pkgconfig/otpd.pc ]] ||
  node_fail "no otpdConfig.cmake or otpd.pc in $libdir"
if find "$prefix/bin" -name '*_test' -o -name 'bench_*' -o -name otpd_test_child | grep -q .; then
  node_fail "tests or benchmarks were installed"
fi

# The example knows nothing of the source tree: only CMAKE_PREFIX_PATH.
args=(-S "$src/examples/hello_worker" -B "$tmp/hello" -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_PREFIX_PATH="$prefix")
if command -v ccache >/dev/null 2>&1; then
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake "${args[@]}" >"$tmp/configure.log" 2>&1 ||
  node_fail "configuring the example: $(cat "$tmp/configure.log")"
cmake --build "$tmp/hello" >"$tmp/build.log" 2>&1 ||
  node_fail "building the example: $(cat "$tmp/build.log")"
# Only the example's own sources may come from the source tree.
if grep -rhos -- "$src/[^ \";]*" "$tmp/hello" | grep -v "^$src/examples/hello_worker" | grep -q .; then
  node_fail "the example was built with paths into the source tree"
fi

# Every exported library resolves, with its own dependencies (generating fails
# on a missing imported target).
mkdir -p "$tmp/all"
cat >"$tmp/all/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(all_libraries CXX)
find_package(otpd REQUIRED)
file(WRITE ${CMAKE_BINARY_DIR}/main.cpp "int main() { return 0; }\n")
add_executable(every_library ${CMAKE_BINARY_DIR}/main.cpp)
target_link_libraries(every_library PRIVATE otpd::core otpd::runtime otpd::shm_table otpd::redis_client
                                            otpd::redis_pool otpd::supervisor)
CMAKE
cmake -S "$tmp/all" -B "$tmp/all/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/all.log" 2>&1 ||
  node_fail "find_package(otpd) with every library: $(cat "$tmp/all.log")"

# otpd.pc: the same program, compiled by hand with pkg-config's flags.
export PKG_CONFIG_PATH=$libdir/pkgconfig
read -ra pc_cflags <<<"$(pkg-config --cflags otpd)"
read -ra pc_libs <<<"$(pkg-config --libs otpd)"
${CXX:-c++} "${pc_cflags[@]}" "$src/examples/hello_worker/main.cpp" "${pc_libs[@]}" \
  -o "$tmp/hello_pc" 2>"$tmp/pc.log" || node_fail "building with otpd.pc: $(cat "$tmp/pc.log")"

cat >"$tmp/node.yaml" <<YAML
node:
  name: install_test
  path: [$tmp/hello]
supervisor:
  strategy: one_for_one
  children:
    - id: hello
      name: hello
      command: [hello_worker]
      readiness: notify
    - id: stack
      name: stack
      command: [stack_worker]   # found in otpd's own directory
      readiness: notify
YAML
"$prefix/bin/otpd" --check "$tmp/node.yaml" >"$tmp/check.log" 2>&1 ||
  node_fail "otpd --check: $(cat "$tmp/check.log")"

node_start "$prefix/bin" "$tmp/node.yaml" "$tmp"
node_wait_running hello
node_wait_running stack
ctl=$prefix/bin/otpctl
expect_call() {
  local got
  got=$("$ctl" call hello "$1") || node_fail "otpctl call hello '$1' failed"
  [[ $got == "$2" ]] || node_fail "otpctl call hello '$1': got $got, want $2"
}
expect_call '["hello", "otpd"]' '["ok","hello, otpd"]'
"$ctl" cast hello '["greeting", "hi"]' || node_fail "otpctl cast failed"
expect_call '["hello", "otpd"]' '["ok","hi, otpd"]'
# handle_info: timer ticks (100 ms apart), and a DOWN for the watched worker that stops.
sleep 0.3
"$ctl" cast hello '["watch", "stack"]' || node_fail "otpctl cast failed"
"$ctl" stop stack >/dev/null || node_fail "otpctl stop stack failed"
for ((i = 0; i < 50; i++)); do
  stats=$("$ctl" call hello stats) || node_fail "otpctl call hello stats failed"
  [[ $stats == *'"downs":1'* ]] && break
  sleep 0.1
done
[[ $stats =~ \"calls\":[0-9]+,\"casts\":2,\"downs\":1,\"ticks\":[1-9] ]] ||
  node_fail "stats: $stats"
node_stop || node_fail "otpd did not shut down cleanly"
echo "install test: ok (prefix $prefix, $(find "$prefix" -type f | wc -l) files)"

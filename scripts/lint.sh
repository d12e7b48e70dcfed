#!/usr/bin/env bash
# Checks formatting (clang-format, the repo's .clang-format) and runs
# clang-tidy (the repo's .clang-tidy) over otpd's sources.
#   scripts/lint.sh            check only; exit 1 on findings
#   scripts/lint.sh --fix      reformat in place
#   scripts/lint.sh --format   check formatting only (CI runs this)
# Both also check the build-time rule of protocol/json_text.hpp: outside
# tests, only protocol/src/json_text.cpp calls nlohmann/json's parser,
# serializer or msgpack codec.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! clang-format --dry-run --Werror "${files[@]}" 2>"$log"; then
  echo "lint: formatting differs from .clang-format (scripts/lint.sh --fix):"
  grep -E '^[^ ].*(warning|error):' "$log" | cut -d: -f1 | sort -u | sed 's/^/  /'
  status=1
fi
if git grep -nE 'json::parse|json::accept|\.dump\(|json::(to|from)_(msgpack|cbor|bson|ubjson)' \
  -- '*.cpp' '*.hpp' ':!tests/' ':!fuzz/' ':!protocol/src/json_text.cpp' \
  ':!protocol/include/otpd/protocol/json_text.hpp' >"$log"; then
  echo "lint: call protocol::parse_json / dump_json / json_to_msgpack / json_from_msgpack"
  echo "      (otpd/protocol/json_text.hpp) instead of nlohmann's templates:"
  sed 's/^/  /' "$log"
  status=1
fi
if [[ "${1:-}" == "--format" ]]; then
  ((status == 0)) && echo "lint: formatting matches .clang-format (${#files[@]} files)"
  exit $status
fi
if command -v clang-tidy >/dev/null 2>&1; then
  [[ -f build/compile_commands.json ]] || bash scripts/build.sh build >/dev/null
  mapfile -t sources < <(git ls-files '*.cpp' | grep -v '^tests/')
  if clang-tidy -p build --quiet "${sources[@]}" 2>/dev/null | grep -E 'warning:|error:'; then
    status=1
  fi
else
  echo "lint: clang-tidy not installed; formatting checked only"
fi
exit $status

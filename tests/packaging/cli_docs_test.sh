#!/usr/bin/env bash
# The man pages and otpctl's completion keep up with the programs: every
# option and subcommand a program's --help lists is in its man page, and every
# otpctl subcommand and option is in both completions.
#   cli_docs_test.sh SOURCE_DIR BIN_DIR
set -uo pipefail
export LC_ALL=C
src=$1 bin=$2
failures=0

# The subcommands and the long options of PROGRAM [SUBCOMMAND] --help.
subcommands() {
  "$@" --help | awk '/^Subcommands:/ { on = 1; next } /^[^ ]/ { on = 0 } on && NF { print $1 }'
}
long_options() {
  "$@" --help | grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]*//' | grep -vx -- --help
}
# need FILE WORD WHAT: WORD appears in FILE.
need() {
  if ! grep -qF -- "$2" "$1"; then
    echo "FAIL: $(basename "$1") lacks $3 $2" >&2
    failures=$((failures + 1))
  fi
}

for tool in otpd:8 otpctl:1 otp-table:1 otp-redis:1; do
  name=${tool%:*}
  page=$src/man/$name.${tool#*:}.scd
  if [[ ! -x $bin/$name ]]; then
    echo "FAIL: $bin/$name is not built" >&2
    failures=$((failures + 1))
    continue
  fi
  for o in $(long_options "$bin/$name"); do
    need "$page" "*$o*" "option"
  done
  for s in $(subcommands "$bin/$name"); do
    need "$page" "*$s*" "subcommand"
    for o in $(long_options "$bin/$name" "$s"); do
      need "$page" "*$o*" "option ($s)"
    done
  done
done

bash_completion=$src/packaging/completion/otpctl.bash
zsh_completion=$src/packaging/completion/_otpctl
for s in $(subcommands "$bin/otpctl"); do
  need "$bash_completion" "$s" "otpctl subcommand"
  need "$zsh_completion" "$s:" "otpctl subcommand"
  for o in $(long_options "$bin/otpctl" "$s"); do
    need "$bash_completion" "$o" "otpctl option ($s)"
    need "$zsh_completion" "$o" "otpctl option ($s)"
  done
done
for o in $(long_options "$bin/otpctl"); do
  need "$bash_completion" "$o" "otpctl option"
  need "$zsh_completion" "$o" "otpctl option"
done

((failures == 0)) || exit 1
echo "man pages and completion cover every option and subcommand: ok"

# bash completion for otpctl(1): commands, options and, from the running otpd,
# child paths (`otpctl paths`, which prints supervisors with a trailing '/').
# Installed to bash-completion's completionsdir, loaded on first use.

# The paths of the running tree, one a line. "$@" is the otpctl being completed
# as typed, with its --runtime-dir if the command line has one.
_otpctl_paths() {
  "$@" paths 2>/dev/null
}

_otpctl() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prev=${COMP_WORDS[COMP_CWORD - 1]}
  local commands="status tree paths start stop restart kill start-child terminate-child
    reload events shutdown reopen-logs call cast exit-reason top web logs reexec"
  local -a ctl=("${COMP_WORDS[0]}")
  local cmd="" i
  local -a args=()  # the command's positional arguments before the current word
  COMPREPLY=()

  for ((i = 1; i < COMP_CWORD; i++)); do
    local w=${COMP_WORDS[i]}
    if [[ $w == --runtime-dir ]]; then
      # bash splits --runtime-dir=DIR into three words: "--runtime-dir" "=" "DIR".
      [[ ${COMP_WORDS[i + 1]} == = ]] && ((i++))
      ((i + 1 < COMP_CWORD)) && ctl+=(--runtime-dir "${COMP_WORDS[i + 1]}")
      ((i++))
    elif [[ $w == --runtime-dir=* ]]; then
      ctl+=("$w")
    elif [[ -n $cmd && ($w == -s || $w == --signal || $w == --timeout || $w == -n || $w == --lines || $w == --binary) ]]; then
      ((i++))  # an option's value is not a positional argument
    elif [[ $w == -* ]]; then
      :
    elif [[ -z $cmd ]]; then
      cmd=$w
    else
      args+=("$w")
    fi
  done

  if [[ $prev == --runtime-dir || ($prev == = && ${COMP_WORDS[COMP_CWORD - 2]} == --runtime-dir) ]]; then
    [[ $cur == = ]] && cur=""
    mapfile -t COMPREPLY < <(compgen -d -- "$cur")
    return
  fi
  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "--runtime-dir --json --help" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
    fi
    return
  fi

  local opts="--json --help"
  case $cmd in
    kill) opts+=" -s --signal" ;;
    events) opts+=" -f --follow" ;;
    reload) opts+=" -n --dry-run" ;;
    top) opts+=" -f --follow --plain" ;;
    call) opts+=" --timeout" ;;
    logs) opts+=" -n --lines -f --follow --stderr" ;;
    reexec) opts+=" --binary" ;;
  esac
  if [[ $cmd == kill && ($prev == -s || $prev == --signal) ]]; then
    local sigs
    sigs=$(compgen -A signal | grep -v '^EXIT$')
    mapfile -t COMPREPLY < <(compgen -W "$sigs ${sigs//SIG/}" -- "$cur")
    return
  fi
  if [[ ($cmd == call && $prev == --timeout) || ($cmd == logs && ($prev == -n || $prev == --lines)) ]]; then
    return
  fi
  if [[ $cmd == reexec && $prev == --binary ]]; then
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    return
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    return
  fi

  local -a paths=()
  local words="" p
  case $cmd:${#args[@]} in
    start:0 | stop:0 | restart:0 | kill:0 | logs:0 | start-child:0 | terminate-child:0 | terminate-child:1)
      mapfile -t paths < <(_otpctl_paths "${ctl[@]}")
      ;;
    *) return ;;
  esac
  for p in "${paths[@]}"; do
    case $cmd:${#args[@]} in
      kill:0 | logs:0) [[ $p == */ ]] || words+=" $p" ;;  # a worker's process, a worker's output
      start-child:0 | terminate-child:0) [[ $p == */ ]] && words+=" ${p%/}" ;;
      terminate-child:1)
        # The children of the chosen supervisor ('/' is the root).
        local sup=${args[0]%/}
        p=${p%/}
        if [[ -z $sup ]]; then
          [[ $p == */* ]] || words+=" $p"
        elif [[ $p == "$sup"/* && ${p#"$sup"/} != */* ]]; then
          words+=" $p"
        fi
        ;;
      *) words+=" ${p%/}" ;;
    esac
  done
  if [[ $cmd == start-child || ($cmd == terminate-child && ${#args[@]} == 0) ]]; then
    words+=" /"
  fi
  mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}

complete -F _otpctl otpctl

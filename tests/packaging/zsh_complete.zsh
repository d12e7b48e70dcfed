# Prints what zsh shows when TAB completes a command line:
#   zsh -f zsh_complete.zsh COMPLETION_DIR BIN_DIR RUNTIME_DIR LINE
# An interactive zsh in a pseudo-terminal (zpty) loads the completion with
# compinit, gets LINE and a TAB, and its screen is read back until it settles.
zmodload zsh/zpty
dir=$1 bin=$2 run=$3 line=$4
zpty -b z 'zsh -f -i'
zpty -w z "PROMPT='READY> '; fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -D; zstyle ':completion:*:descriptions' format ''; LISTMAX=1000; PATH=${(q)bin}:\$PATH; export OTPD_RUNTIME_DIR=${(q)run}"
zpty -r -m z out '*READY> *'
zpty -r -m z out '*READY> *'
zpty -n -w z "$line"$'\t'
out="" quiet=0
# Read until nothing new arrives for 1 s (at most 20 s).
for i in {1..200}; do
  if zpty -r -t z chunk; then
    out+=$chunk quiet=0
  else
    (( ++quiet >= 10 )) && break
    sleep 0.1
  fi
done
zpty -d z
# The screen after the echoed command line: the caller strips the terminal's
# escape sequences.
print -r -- ${out#*$line}

# zsh_capture.zsh FPATH_DIR 'COMMAND LINE': prints, one a line, the completions zsh offers
# at the end of the line, with the completion files of FPATH_DIR loaded by compinit. An
# interactive zsh runs in a pseudo-terminal (zsh/zpty): completion needs a line editor.
zmodload zsh/zpty || exit 77
zpty z zsh -f -i
zpty -w z "PROMPT=; RPROMPT=; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false"
# Every match added (but into arrays: -O, -A, -D) is printed behind a marker the
# terminal's echo of this very line cannot hold.
zpty -w z 'compadd () {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a hits; local h; builtin compadd -A hits "$@"; local ret=$?
  for h in $hits; do print -r -- "M""ATCH:$h"; done
  return $ret
}'
zpty -w z 'finish () { print -r -- "D""ONE"; exit }; zle -N finish; bindkey "^X" finish; bindkey "^I" complete-word'
zpty -w -n z "$2"$'\t'
zpty -w -n z $'\C-X'
integer n=0
while (( n++ < 2000 )) && zpty -r z line; do
  [[ $line == *DONE* ]] && break
  [[ $line == *MATCH:* ]] && print -r -- ${${line##*MATCH:}%%$'\r'*}
done
zpty -d z

#!/usr/bin/env bash
# Every binary: --help on stdout within 80 columns, --version, an unknown flag exits 2
# with a message on stderr, and every long flag appears in its man page and in the
# bash, zsh and fish completions.
source "$(dirname "$0")/lib.sh"
cd "$MIRAGE_SOURCE"
declare -A subs=([mirage]="check stats policy events token gc collection device volume" [mirage-serverd]="init repair limits methods" [mirage-centralize]="request pending devices accept reject"
  [mirage-restore]="snapshots ls find diff dump mount" [mirage-capture]="base app driver list" [mirage-assign]="render status" [mirage-migrate]="check rules")
for tool in mirage mirage-serverd mirage-centralize mirage-restore mirage-capture mirage-assign mirage-migrate; do
  expect_exit 0 "$tool" --help
  [ -n "$OUT" ] || fail "$tool --help printed nothing on stdout"
  helps="$OUT"
  for sub in ${subs[$tool]}; do
    expect_exit 0 "$tool" $sub --help
    helps+=$'\n'"$OUT"
  done
  if [ "$tool" = mirage ]; then
    for pair in token:create token:list token:revoke policy:list policy:show policy:set policy:assign \
      collection:create collection:list collection:show collection:delete device:list device:tag \
      volume:list volume:add volume:set; do
      expect_exit 0 "$tool" ${pair%%:*} ${pair#*:} --help
      helps+=$'\n'"$OUT"
    done
  fi
  if [ "$tool" = mirage-capture ]; then
    for sub in begin finish; do expect_exit 0 "$tool" app $sub --help; helps+=$'\n'"$OUT"; done
  fi
  long=$(awk 'length($0) > 80' <<<"$helps")
  [ -z "$long" ] || fail "$tool --help has lines over 80 columns: $long"
  expect_exit 0 "$tool" --version
  expect_contains "$OUT" "0."
  expect_exit 2 "$tool" --definitely-not-a-flag
  [ -n "$ERR" ] || fail "$tool: unknown flag gave no message on stderr"
  [ -f "man/$tool.1" ] || fail "no man page for $tool"
  for section in SYNOPSIS DESCRIPTION OPTIONS "JSON OUTPUT" "EXIT STATUS" EXAMPLES; do
    grep -q "^\.SH $section" "man/$tool.1" || fail "man/$tool.1 lacks $section"
  done
  for flag in $(grep -oE -- '--[a-z][a-z0-9-]+' <<<"$helps" | sort -u); do
    man_flag=$(sed 's/-/\\\\-/g' <<<"$flag")
    grep -q -- "$man_flag" "man/$tool.1" || fail "man/$tool.1 does not document $flag"
    grep -q -- "$flag" "completions/bash/$tool" || fail "bash completion of $tool lacks $flag"
    grep -q -- "'$flag\[" "completions/zsh/_$tool" || grep -q -- "$flag\[" "completions/zsh/_$tool" || fail "zsh completion of $tool lacks $flag"
    grep -q -- "-l ${flag#--} " "completions/fish/$tool.fish" || fail "fish completion of $tool lacks $flag"
  done
done
bash -n completions/bash/* || fail "bash completion syntax"
if command -v zsh >/dev/null; then for f in completions/zsh/*; do zsh -n "$f" || fail "zsh syntax: $f"; done; fi
if command -v fish >/dev/null; then for f in completions/fish/*; do fish -n "$f" || fail "fish syntax: $f"; done; fi
# The dispatcher runs tools git-style.
expect_exit 0 mirage restore --help
expect_contains "$OUT" "mirage-restore"
expect_exit 2 mirage frobnicate
echo ok

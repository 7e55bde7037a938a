#!/usr/bin/env bash
# The completion files work in their shells, not only in bash: each zsh and fish file
# loads without error, and a few commands, subcommands and flag values complete as the
# tools take them. Skips (77) when a shell is missing (scripts/install-deps --test
# installs both).
source "$(dirname "$0")/lib.sh"
comp="$MIRAGE_SOURCE/completions"
ran=0
# has LIST WORD...: every WORD is a line of LIST.
has() { local list=$1; shift; for w in "$@"; do grep -qxF -- "$w" <<<"$list" || fail "no completion '$w' in: $(tr '\n' ' ' <<<"$list")"; done; }

if command -v fish >/dev/null; then
  ran=1
  for f in "$comp"/fish/*.fish; do
    fish -n "$f" || fail "fish cannot parse $f"
  done
  fc() {  # fc LINE: fish's completions at the end of LINE, the words only
    timeout 20 fish --no-config -c "for f in $comp/fish/*.fish; source \$f; end; complete -C '$1'" | cut -f1
  }
  has "$(fc 'mirage ')" device snapshot layer gc volume collection
  has "$(fc 'mirage device ')" list rename delete tag
  has "$(fc 'mirage snapshot ')" forget
  has "$(fc 'mirage device list --st')" --stale --state
  has "$(fc 'mirage device list --stale ')" 24h 7d
  has "$(fc 'mirage collection create lab --field ')" sys_vendor= os_id=
  has "$(fc 'mirage-serverd --log-level ')" error warn info debug
  has "$(fc 'mirage-restore ')" snapshots
  has "$(fc 'mirage-centralize --')" --device-id --root
  # A made-up flag completes to nothing (the checks above can fail).
  [ -z "$(fc 'mirage --no-such-fl')" ] || fail "fish completed a flag that does not exist"
fi

if command -v zsh >/dev/null; then
  ran=1
  for f in "$comp"/zsh/_*; do
    zsh -n "$f" || fail "zsh cannot parse $f"
  done
  zc() { timeout 20 zsh -f "$MIRAGE_SOURCE/tests/e2e/zsh_capture.zsh" "$comp/zsh" "$1"; }
  out=$(zc 'mirage dev')
  [ $? = 77 ] && skip "zsh without zsh/zpty"
  has "$out" device
  has "$(zc 'mirage gc --dr')" --dry-run
  has "$(zc 'mirage device list --sta')" --stale --state
  has "$(zc 'mirage device list --stale ')" 1h 24h 7d 30d
  has "$(zc 'mirage collection create x --field ')" sys_vendor= pci=
  has "$(zc 'mirage-serverd --log-level ')" error warn info debug
  has "$(zc 'mirage serverd --log-')" --log-level   # the dispatcher hands over to the tool's
  has "$(zc 'mirage-restore --dev')" --device
  [ -z "$(zc 'mirage --no-such-fl')" ] || fail "zsh completed a flag that does not exist"
fi
[ "$ran" = 1 ] || skip "needs zsh or fish"
echo ok

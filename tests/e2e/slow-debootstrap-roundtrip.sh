#!/usr/bin/env bash
# A Debian root made by debootstrap (bookworm minbase) round-trips: everything the
# default upload policy protects comes back byte for byte and metadata for metadata;
# the unprotected areas come back as empty directories with their metadata. Then a
# change inside the root syncs incrementally and restores exactly.
source "$(dirname "$0")/lib.sh"
need_root
need debootstrap python3
root="$TEST_TMP/bookworm"
make_bookworm "$root"
unprotected=(proc sys dev run tmp var/tmp var/cache)
centralize_accepted "$root" dev-bookworm >"$TEST_TMP/c1.json"
expect_contains "$(cat "$TEST_TMP/c1.json")" '"snapshot_id"'
mirage-restore --device dev-bookworm --path / --to "$TEST_TMP/back" >/dev/null
expect_same_tree "$root" "$TEST_TMP/back" "${unprotected[@]}"
for d in "${unprotected[@]}"; do
  [ -d "$TEST_TMP/back/$d" ] || fail "unprotected $d not kept as a directory"
  [ -z "$(ls -A "$TEST_TMP/back/$d")" ] || fail "unprotected $d has contents"
done
[ "$(stat -c %a "$TEST_TMP/back/tmp")" = 1777 ] || fail "/tmp lost its mode"

# Incremental: a package database edit and a new file; only those are read.
echo "# local edit" >>"$root/etc/bash.bashrc"
cp "$root/usr/bin/ls" "$root/usr/local/bin/myls"
expect_exit 0 mirage-centralize --root "$root" --device-id dev-bookworm --output json
expect_contains "$OUT" '"files_read":2'
mirage-restore --device dev-bookworm --path / --to "$TEST_TMP/back2" >/dev/null
expect_same_tree "$root" "$TEST_TMP/back2" "${unprotected[@]}"
# The restored system works: run its own shell in a chroot.
[ "$(chroot "$TEST_TMP/back2" /bin/sh -c 'echo works')" = works ] || fail "restored root does not run"
expect_exit 0 mirage check --read-data --output json
echo ok

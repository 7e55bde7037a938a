#!/usr/bin/env bash
# Restore, layer apply and `mirage-assign render` share one writer of file contents, so
# a sparse file stays sparse in all three: a 50 MB file with 6 bytes of data must not
# take 50 MB of disk (once, render and apply wrote every zero: 51,200 KiB).
source "$(dirname "$0")/lib.sh"
need python3 du truncate
src="$TEST_TMP/src"; mkdir -p "$src/opt/app"
truncate -s 50M "$src/opt/app/sparse.img"
printf 'middle' | dd of="$src/opt/app/sparse.img" bs=1 seek=20971520 conv=notrunc status=none
head -c 100000 /dev/urandom >"$src/opt/app/dense.bin"
[ "$(du -k "$src/opt/app/sparse.img" | cut -f1)" -lt 1024 ] || skip "this file system does not keep holes"
centralize_accepted "$src" sparse-src >/dev/null

small() {  # small FILE: fails unless FILE holds under 1 MiB of blocks and has the source's bytes
  local kib; kib=$(du -k "$1" | cut -f1)
  [ "$kib" -lt 1024 ] || fail "$1 takes $kib KiB on disk: holes were filled"
  cmp "$src/opt/app/sparse.img" "$1" || fail "$1 differs"
}
# Restore.
expect_exit 0 mirage-restore --device sparse-src --path /opt --to "$TEST_TMP/restored"
small "$TEST_TMP/restored/opt/app/sparse.img"
# Render of a base layer captured from the snapshot.
expect_exit 0 mirage-capture base --name sparse-base --from sparse-src --output json
expect_exit 0 mirage-assign render --base sparse-base --to "$TEST_TMP/render" --output json
small "$TEST_TMP/render/opt/app/sparse.img"
cmp "$src/opt/app/dense.bin" "$TEST_TMP/render/opt/app/dense.bin"
echo ok

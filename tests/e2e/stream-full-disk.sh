#!/usr/bin/env bash
# A streaming restore to a directory whose file system fills up during the fill (a 40 MB
# ext4 on a loop device, 20 MB of it taken by a ballast file; two 12 MB placeholders):
# the restore ends with an error naming the disk full, every file not filled is still a
# placeholder (none looks complete); with the ballast gone, the same command finishes the
# tree, equal to the source.
source "$(dirname "$0")/lib.sh"
need_root
need python3 mkfs.ext4 losetup mount umount
T=$TEST_TMP
start_http_server "$T/server"
export MIRAGE_SERVER="$SERVER_URL"

src=$T/src
mkdir -p "$src/etc" "$src/home/u"
echo host >"$src/etc/hostname"
head -c 12M /dev/urandom >"$src/home/u/a.bin"
head -c 12M /dev/urandom >"$src/home/u/b.bin"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-f --state "$T/state" --output json
admin mirage-centralize accept dev-f >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev-f --state "$T/state" --output json

disk=$T/disk
mkdir -p "$disk"
truncate -s 40M "$T/disk.img"
mkfs.ext4 -q -F "$T/disk.img" >/dev/null 2>&1 || skip "mkfs.ext4 failed"
mount -o loop "$T/disk.img" "$disk" 2>/dev/null || skip "cannot mount a loop device here"
trap 'umount "$disk" 2>/dev/null || umount -l "$disk" 2>/dev/null || true; stop_server; cleanup' EXIT
head -c 20M /dev/zero >"$disk/ballast"
sync
back=$disk/back
expect_exit 1 admin mirage-restore --device dev-f --path / --to "$back" --stream --output json
expect_contains "$ERR" "No space left on device"
left=0
for rel in /home/u/a.bin /home/u/b.bin; do
  if ! cmp -s "$src$rel" "$back$rel"; then
    is_placeholder "$back$rel" || fail "$rel is neither complete nor a placeholder after the disk filled up"
    left=$((left + 1))
  fi
done
[ "$left" -gt 0 ] || fail "both files fit: nothing tested"
rm "$disk/ballast"
expect_exit 0 admin mirage-restore --device dev-f --path / --to "$back" --stream --output json
# The independent listing (xattrs and ACLs included); not getfacl -R, whose order is the
# directory's, another on a fresh file system.
listing "$src" >"$T/list.src"
listing "$back" >"$T/list.back"
diff -u "$T/list.src" "$T/list.back" >&2 || fail "trees differ: $src $back"
echo "stream-full-disk: ok"

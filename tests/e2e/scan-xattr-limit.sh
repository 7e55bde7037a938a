#!/usr/bin/env bash
# A file with more xattrs than a tree entry may hold (4,500 > 4,096) is left out and
# named, and the rest of the machine is backed up; once, the whole commit failed with
# exit 6 naming neither. Needs root: trusted.* xattrs on a tmpfs mounted for the test
# (ext4 holds only a block of xattrs per file).
source "$(dirname "$0")/lib.sh"
need_root
need python3 setfattr
src="$TEST_TMP/src"; mkdir -p "$src"
mount -t tmpfs -o size=64m mirage-test "$src" 2>/dev/null || skip "cannot mount a tmpfs"
trap 'umount "$src" 2>/dev/null || true; cleanup' EXIT
mkdir -p "$src/docs"
echo fine >"$src/docs/fine.txt"
setfattr -n user.ok -v yes "$src/docs/fine.txt" 2>/dev/null || true
echo many >"$src/docs/many-xattrs"
python3 - "$src/docs/many-xattrs" <<'PY'
import os, sys
for i in range(4500):
    os.setxattr(sys.argv[1], "trusted.%d" % i, b"v")  # short names: a listing holds 64 KiB
PY
[ "$(getfattr -m - -d "$src/docs/many-xattrs" 2>/dev/null | grep -c '^trusted')" = 4500 ] || skip "tmpfs holds fewer xattrs"
expect_exit 5 mirage-centralize --root "$src" --device-id xattrs --output json
mirage-centralize accept xattrs --output json >/dev/null
expect_exit 1 mirage-centralize --root "$src" --device-id xattrs --output json
expect_contains "$ERR" 'is incomplete: 1 entry could not be read (first: /docs/many-xattrs: cannot be stored: 4500 xattrs, more than 4096'
expect_contains "$OUT" '"unreadable":1'
expect_exit 0 mirage-restore --device xattrs --path / --to "$TEST_TMP/back"
python3 -c 'import os, sys; d = sys.argv[1]; st = os.stat(d); os.remove(d + "/many-xattrs"); os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))' "$src/docs"
expect_same_tree "$src" "$TEST_TMP/back"

# The files cache remembers that a file had no xattrs, and the next scan does not list
# them while its stamp is unchanged; one set since changes the ctime and is backed up.
echo plain >"$src/docs/plain.txt"
expect_exit 0 mirage-centralize --root "$src" --device-id xattrs --output json
expect_exit 0 mirage-centralize --root "$src" --device-id xattrs --output json
setfattr -n user.added -v later "$src/docs/plain.txt"
expect_exit 0 mirage-centralize --root "$src" --device-id xattrs --output json
rm -rf "$TEST_TMP/back2"
expect_exit 0 mirage-restore --device xattrs --path /docs/plain.txt --to "$TEST_TMP/back2"
[ "$(getfattr --only-values -n user.added "$TEST_TMP/back2/docs/plain.txt" 2>/dev/null)" = later ] ||
  fail "the xattr set after a cached sync is not in the snapshot"
echo ok

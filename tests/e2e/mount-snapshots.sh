#!/usr/bin/env bash
# mirage-restore mount (FUSE): a tree with every kind of entry in two snapshots, mounted;
# the mount's listing (os.lstat: type, mode, owner, size, ns mtime, rdev, symlink
# targets, content hashes, sparseness, hardlink groups by inode and link count, xattrs
# and ACLs) equals that of `mirage-restore --path / --to DIR` of the same snapshot. The
# layout (snapshots/<id>, latest, by-date) and a snapshot committed after the mount
# appearing in it, df, --snapshot, read-only, SIGTERM unmounting,
# the refusals (a mountpoint not empty or missing, a stale mount, no /dev/fuse) and, over
# HTTP, a device credential mounting only its own device.
source "$(dirname "$0")/lib.sh"
need python3 fusermount3 mountpoint
[ -c /dev/fuse ] || skip "no /dev/fuse"
mnt="$TEST_TMP/mnt"
mkdir "$mnt"
MOUNT_PID=
# unmount: the mount's own process first (SIGTERM unmounts), then whatever is left.
unmount() {
  if [ -n "$MOUNT_PID" ] && kill -0 "$MOUNT_PID" 2>/dev/null; then
    kill -TERM "$MOUNT_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  mountpoint -q "$mnt" 2>/dev/null && { fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
  MOUNT_PID=
}
trap 'unmount; stop_server; cleanup' EXIT
# mount_bg ARGS...: mirage-restore mount ARGS... $mnt in the background, waiting (up to
# 60 s) until it says it is mounted; its stdout is in $TEST_TMP/mount.out.
# SIGINT is set back to its default first: a shell starts a background job with it
# ignored, and the mount (as libfuse) keeps a signal it finds ignored so.
mount_bg() {
  python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    mirage-restore mount "$@" "$mnt" >"$TEST_TMP/mount.out" 2>"$TEST_TMP/mount.err" &
  MOUNT_PID=$!
  for _ in $(seq 1 600); do
    grep -q '"mountpoint"' "$TEST_TMP/mount.out" 2>/dev/null && mountpoint -q "$mnt" && return 0
    kill -0 "$MOUNT_PID" 2>/dev/null || break
    sleep 0.1
  done
  fail "mount $* did not come up: $(cat "$TEST_TMP/mount.err")"
}

src="$TEST_TMP/src"
make_every_kind "$src"
centralize_accepted "$src" dev-m >/dev/null
cp -a "$src" "$TEST_TMP/v1"
printf 'changed\n' >>"$src/dir/text.txt"
printf 'second\n' >"$src/only-in-2"
rm "$src/hard2"  # the group of hello.txt is two now
# More names than one FUSE listing reply holds (about 190 with attributes).
python3 -c 'import os, sys
for i in range(1500): open(os.path.join(sys.argv[1], "n%04d" % i), "w").close()' "$(mkdir -p "$src/many" && echo "$src/many")"
mirage-centralize --root "$src" --device-id dev-m --output json >/dev/null
read -r s1 s2 < <(mirage-restore snapshots --device dev-m --output json |
  python3 -c 'import json,sys; l=json.load(sys.stdin)["snapshots"]; print(l[0]["snapshot_id"], l[1]["snapshot_id"])')
mirage-restore --device dev-m --path / --to "$TEST_TMP/restored2" --output json >/dev/null
mirage-restore --device dev-m --snapshot "$s1" --path / --to "$TEST_TMP/restored1" --output json >/dev/null

# Every snapshot: both under snapshots/, latest the newest, by-date links to each.
mount_bg --device dev-m
python3 - "$TEST_TMP/mount.out" "$s1" "$s2" <<'PY' || fail "mount's JSON: $(cat "$TEST_TMP/mount.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["device_id"] == "dev-m" and d["latest"] == sys.argv[3], d
assert [s["snapshot_id"] for s in d["snapshots"]] == sys.argv[2:4], d
assert all(s["path"] == "snapshots/" + s["snapshot_id"] and s["by_date"].startswith("by-date/20") for s in d["snapshots"]), d
PY
[ "$(ls "$mnt")" = "$(printf 'by-date\nlatest\nsnapshots')" ] || fail "mount root: $(ls "$mnt")"
[ "$(ls "$mnt/snapshots" | sort)" = "$(printf '%s\n' "$s1" "$s2" | sort)" ] || fail "snapshots/: $(ls "$mnt/snapshots")"
[ "$(readlink "$mnt/latest")" = "snapshots/$s2" ] || fail "latest -> $(readlink "$mnt/latest")"
[ "$(ls "$mnt/by-date" | wc -l)" = 2 ] || fail "by-date: $(ls "$mnt/by-date")"
for d in "$mnt"/by-date/*; do
  case "$(readlink "$d")" in "../snapshots/$s1" | "../snapshots/$s2") ;; *) fail "$d -> $(readlink "$d")" ;; esac
  [[ "$(basename "$d")" =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z(-[0-9]+)?$ ]] || fail "by-date name $d"
done
[ "$(cat "$mnt/latest/only-in-2")" = second ] || fail "latest/only-in-2"
[ ! -e "$mnt/snapshots/$s1/only-in-2" ] || fail "only-in-2 in the first snapshot"

# Each snapshot's listing and bytes equal its restore's, the root's own entry included
# (ACLs are xattrs there: getfacl -R would differ only in its walk order).
same_listing() {
  listing "$1" >"$TEST_TMP/list.a"
  listing "$2" >"$TEST_TMP/list.b"
  diff -u "$TEST_TMP/list.a" "$TEST_TMP/list.b" >&2 || fail "listings differ: $1 $2"
  grep -q "posix_acl_access=" "$TEST_TMP/list.b" || fail "no ACL in the listing of $2"
}
same_listing "$TEST_TMP/restored2" "$mnt/snapshots/$s2"
same_listing "$TEST_TMP/restored1" "$mnt/snapshots/$s1"
[ "$(ls "$mnt/latest/many" | wc -l)" = 1500 ] || fail "ls of a 1,500-entry directory: $(ls "$mnt/latest/many" | wc -l)"
# latest is a link to the newest: the same inodes.
[ "$(stat -c %i "$mnt/latest/dir/hello.txt")" = "$(stat -c %i "$mnt/snapshots/$s2/dir/hello.txt")" ] ||
  fail "latest/ is not snapshots/$s2"
# Hardlinks: one inode per group, its link count the group's size in that snapshot.
python3 - "$mnt/snapshots/$s1" "$mnt/snapshots/$s2" <<'PY' || fail "hardlinks through the mount"
import os, sys
a, b = sys.argv[1:3]
h = [os.lstat(os.path.join(a, p)) for p in ("dir/hello.txt", "dir/sub/hard1", "hard2")]
assert len({s.st_ino for s in h}) == 1 and all(s.st_nlink == 3 for s in h), h
h = [os.lstat(os.path.join(b, p)) for p in ("dir/hello.txt", "dir/sub/hard1")]
assert len({s.st_ino for s in h}) == 1 and all(s.st_nlink == 2 for s in h), h
assert os.lstat(os.path.join(a, "dir/hello.txt")).st_ino != h[0].st_ino  # another snapshot, another inode
PY
# df: the snapshots' sizes, nothing free, read-only.
df_line=$(df -B1 --output=size,avail,target "$mnt" | tail -1)
read -r df_size df_avail _ <<<"$df_line"
[ "$df_size" -gt 20000000 ] && [ "$df_avail" = 0 ] || fail "df on the mount: $df_line"
python3 -c 'import os, sys; assert os.statvfs(sys.argv[1]).f_flag & os.ST_RDONLY' "$mnt" || fail "statvfs: not read-only"
# A snapshot committed after the mount appears within seconds, and latest follows it.
printf 'third\n' >"$src/only-in-3"
mirage-centralize --root "$src" --device-id dev-m --output json >"$TEST_TMP/s3.json"
s3=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["snapshot_id"])' <"$TEST_TMP/s3.json")
for _ in $(seq 1 150); do [ "$(readlink "$mnt/latest")" = "snapshots/$s3" ] && break; sleep 0.1; done
[ "$(readlink "$mnt/latest")" = "snapshots/$s3" ] || fail "latest did not follow a new snapshot: $(readlink "$mnt/latest")"
ls "$mnt/snapshots" | grep -qx "$s3" || fail "snapshots/ does not list the new snapshot: $(ls "$mnt/snapshots")"
[ "$(cat "$mnt/latest/only-in-3")" = third ] || fail "latest/only-in-3"
[ "$(ls "$mnt/by-date" | wc -l)" = 3 ] || fail "by-date after the new snapshot: $(ls "$mnt/by-date")"
# Read-only: nothing can be written, made or removed.
touch "$mnt/latest/new" 2>/dev/null && fail "a file was made in the mount"
printf x 2>/dev/null >>"$mnt/latest/dir/hello.txt" && fail "a file in the mount was written"
rm -f "$mnt/latest/empty" 2>/dev/null && [ ! -e "$mnt/latest/empty" ] && fail "a file in the mount was removed"
# A ranged read returns those bytes (the middle of the sparse file).
[ "$(dd if="$mnt/latest/sparse" bs=1 skip=10485758 count=10 status=none | od -An -c | tr -d ' ')" = '\0\0middle\0\0' ] ||
  fail "ranged read of /sparse"

# SIGTERM unmounts and exits 0.
kill -TERM "$MOUNT_PID"
for _ in $(seq 1 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$MOUNT_PID" 2>/dev/null && fail "the mount still runs 10 s after SIGTERM"
rc=0; wait "$MOUNT_PID" || rc=$?
MOUNT_PID=
[ "$rc" = 0 ] || fail "mount exited $rc after SIGTERM: $(cat "$TEST_TMP/mount.err")"
mountpoint -q "$mnt" && fail "still mounted after SIGTERM"
grep -q " $mnt " /proc/mounts && fail "left in /proc/mounts"
expect_contains "$(cat "$TEST_TMP/mount.err")" "unmounting $mnt"

# --snapshot: that one snapshot at the root; SIGINT unmounts too.
mount_bg --device dev-m --snapshot "${s1:0:8}"
[ ! -e "$mnt/snapshots" ] && [ ! -e "$mnt/only-in-2" ] || fail "--snapshot root: $(ls "$mnt")"
cmp "$mnt/dir/text.txt" "$TEST_TMP/v1/dir/text.txt" || fail "--snapshot $s1: text.txt differs"
kill -INT "$MOUNT_PID"
for _ in $(seq 1 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
mountpoint -q "$mnt" && fail "still mounted after SIGINT"
MOUNT_PID=

# Refusals: a mountpoint with something in it or missing (2), an unknown snapshot (3),
# a stale mount a killed one left (5, naming the cure), no /dev/fuse (5).
expect_exit 2 mirage-restore mount --device dev-m "$TEST_TMP/src"
expect_contains "$ERR" "not an empty directory"
expect_exit 2 mirage-restore mount --device dev-m "$TEST_TMP/no-such-dir"
expect_exit 2 mirage-restore mount --device dev-m
expect_exit 3 mirage-restore mount --device dev-m --snapshot 0000dead "$mnt"
mount_bg --device dev-m
kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null || true
MOUNT_PID=
expect_exit 5 mirage-restore mount --device dev-m "$mnt"
expect_contains "$ERR" "fusermount3 -u $mnt"
fusermount3 -u "$mnt" || umount -l "$mnt"
if command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
  expect_exit 5 unshare -m sh -c 'mount -t tmpfs none /dev && exec "$@"' sh mirage-restore mount --device dev-m "$mnt"
  expect_contains "$ERR" "/dev/fuse"
fi

# Over HTTP: a device's credential mounts its own device only.
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL"
mkdir -p "$TEST_TMP/a"; printf 'a\n' >"$TEST_TMP/a/f"
expect_exit 5 mirage-centralize --root "$TEST_TMP/a" --device-id dev-a --output json
expect_exit 5 mirage-centralize --root "$TEST_TMP/v1" --device-id dev-c --output json
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept dev-a >/dev/null
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept dev-c >/dev/null
mirage-centralize --root "$TEST_TMP/a" --device-id dev-a --output json >/dev/null
mirage-centralize --root "$TEST_TMP/v1" --device-id dev-c --output json >/dev/null
cred="mdc_dev-a.$(cat "$MIRAGE_HOME/endpoint/dev-a/credential")"
MIRAGE_TOKEN=$cred expect_exit 4 mirage-restore mount --device dev-c "$mnt"
expect_contains "$ERR" "own CVD"
mountpoint -q "$mnt" && fail "mounted another device's CVD"
MIRAGE_TOKEN=$cred mount_bg --device dev-a
[ "$(cat "$mnt/latest/f")" = a ] || fail "dev-a's own file through its credential"
unmount
echo ok

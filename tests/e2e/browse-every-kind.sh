#!/usr/bin/env bash
# mirage-restore ls, find, diff and dump on a tree with every kind of entry, checked
# against an independent lister (Python's os.lstat, GNU tar, tarfile, zipfile): text and
# JSON output, a missing path (3), '..' (2), a symlink in a path (not followed: 3), mirage
# stats against the tree's own byte counts, and over HTTP a device credential reaching
# for another device's snapshots (4; 3 for its id) or for stats (4).
source "$(dirname "$0")/lib.sh"
need python3 tar
src="$TEST_TMP/src"
make_every_kind "$src"
centralize_accepted "$src" dev-b >/dev/null
cp -a "$src" "$TEST_TMP/v1"
printf 'changed\n' >>"$src/dir/text.txt"
rm "$src/name with spaces"
head -c 100000 /dev/urandom >"$src/dir/new.bin"
mkdir "$src/dir/newdir"; printf 'n\n' >"$src/dir/newdir/n.txt"
chmod 600 "$src/setgid"
rm "$src/fifo"; printf 'now a file' >"$src/fifo"
mirage-centralize --root "$src" --device-id dev-b --output json >/dev/null
read -r s1 s2 < <(mirage-restore snapshots --device dev-b --output json |
  python3 -c 'import json,sys; l=json.load(sys.stdin)["snapshots"]; print(l[0]["snapshot_id"], l[1]["snapshot_id"])')

# ls -R as JSON lines equals os.lstat's view of the tree (type, mode, owner, size, ns mtime, target).
expect_exit 0 mirage-restore ls --device dev-b --recursive --output json
printf '%s\n' "$OUT" >"$TEST_TMP/ls.jsonl"
python3 - "$src" "$TEST_TMP/ls.jsonl" <<'PY' || fail "ls -R differs from the tree"
import json, os, stat, sys
root = os.fsencode(sys.argv[1])
kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
         stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}
want = {}
for dirpath, dirs, files, _ in os.fwalk(root):
    for name in dirs + files:
        full = os.path.join(dirpath, name)
        st = os.lstat(full)
        path = ("/" + os.path.relpath(full, root).decode("utf-8", "replace"))
        row = {"type": kinds[stat.S_IFMT(st.st_mode)], "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
               "gid": st.st_gid, "size": st.st_size if stat.S_ISREG(st.st_mode) else 0,
               "mtime_ns": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            row["target"] = os.readlink(full).decode("utf-8", "replace")
        want[path] = row
got = {}
lines = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
for j in lines:
    row = {k: j[k] for k in ("type", "mode", "uid", "gid", "size", "mtime_ns")}
    if "target" in j: row["target"] = j["target"]
    got[j["path"]] = row
paths = [j["path"] for j in lines]
ok = True
for p in sorted(set(want) | set(got)):
    if want.get(p) != got.get(p):
        print("differs:", p, want.get(p), got.get(p)); ok = False
sys.exit(0 if ok else 1)
PY

# ls text: a header and aligned columns; a name with a newline stays on its row.
expect_exit 0 mirage-restore ls --device dev-b --long --output text
head -1 <<<"$OUT" | grep -qE '^MODE +UID +GID +SIZE +MTIME +PATH$' || fail "ls --long header: $(head -1 <<<"$OUT")"
grep -qE '^-rwsr-xr-x +0 +0 +1 B +[0-9T:Z-]+ +/setuid$' <<<"$OUT" || fail "ls --long row of /setuid: $OUT"
grep -qE '^lrwxrwxrwx .* /abs-link -> /etc/passwd$' <<<"$OUT" || fail "ls --long symlink row: $OUT"
expect_contains "$OUT" '/new\012line'
[ "$(wc -l <<<"$OUT")" = "$(python3 -c 'import os,sys; print(len(os.listdir(sys.argv[1])) + 1)' "$src")" ] || fail "ls --long: one row per entry: $OUT"
# One file; a symlink names itself (not followed); the older snapshot by id prefix.
expect_exit 0 mirage-restore ls --device dev-b /dir/hello.txt --output json
expect_contains "$OUT" '"path":"/dir/hello.txt"'
expect_contains "$OUT" '"link_group":"/hard2"'
expect_exit 0 mirage-restore ls --device dev-b /dir/rel-link --output json
expect_contains "$OUT" '"type":"symlink"'
expect_contains "$OUT" '"target":"hello.txt"'
expect_exit 0 mirage-restore ls --device dev-b --snapshot "${s1:0:8}" / --output text
expect_contains "$OUT" '/name with spaces'
# Errors: missing path 3, '..' 2, through a symlink 3 naming it, an unknown snapshot 3.
expect_exit 3 mirage-restore ls --device dev-b /no/such/path
expect_contains "$ERR" "not in the snapshot"
# A name with control bytes in an error reaches the terminal escaped: it can neither
# drive the terminal nor forge a line of its own.
expect_exit 3 mirage-restore ls --device dev-b $'/e\033[31mRED\nmirage-restore: fake line' --output text
expect_contains "$ERR" '/e\033[31mRED\012mirage-restore: fake line'
[ "$(wc -l <"$TEST_TMP/.stderr")" = 1 ] && ! grep -q $'\033' "$TEST_TMP/.stderr" || fail "control bytes reached stderr: $ERR"
# A restore whose path goes through a symlink names it as ls does (3); a directory where
# the snapshot has a file is left as it is, whatever --overwrite says (5), and said.
expect_exit 3 mirage-restore --device dev-b --path /dir/rel-link/x --to "$TEST_TMP/through-link" --output text
expect_contains "$ERR" "/dir/rel-link is a symlink to hello.txt"
mkdir -p "$TEST_TMP/dir-in-way/dir/hello.txt/kept"
expect_exit 5 mirage-restore --device dev-b --path /dir/hello.txt --to "$TEST_TMP/dir-in-way" --overwrite always --output text
expect_contains "$ERR" "put /dir/hello.txt in place: a directory is there"
[ -d "$TEST_TMP/dir-in-way/dir/hello.txt/kept" ] || fail "the directory in the way was touched"
[ -z "$(find "$TEST_TMP/dir-in-way/dir" -name '.mirage-restore*')" ] || fail "a temporary was left"
expect_exit 2 mirage-restore ls --device dev-b /dir/../etc
expect_contains "$ERR" "'..'"
expect_exit 3 mirage-restore ls --device dev-b /dir/rel-link/x
expect_contains "$ERR" "/dir/rel-link is a symlink to hello.txt"
expect_exit 3 mirage-restore ls --device dev-b --snapshot 0000dead /
expect_exit 3 mirage-restore ls --device no-such-device /

# find: one version held by both snapshots, two versions of a changed file, path globs, mtime filters.
expect_exit 0 mirage-restore find --device dev-b hello.txt --output json
python3 - "$OUT" "$s1" "$s2" <<'PY' || fail "find hello.txt: $OUT"
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines()]
assert len(rows) == 1 and rows[0]["path"] == "/dir/hello.txt" and rows[0]["snapshots"] == sys.argv[2:4], rows
PY
expect_exit 0 mirage-restore find --device dev-b text.txt --output json
python3 - "$OUT" "$s1" "$s2" <<'PY' || fail "find text.txt: $OUT"
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines()]
assert [(r["size"], r["snapshots"]) for r in rows] == [(2000000, [sys.argv[2]]), (2000008, [sys.argv[3]])], rows
PY
expect_exit 0 mirage-restore find --device dev-b '/dir/*.bin' --snapshot "$s1" --output json
[ "$(grep -c '"path"' <<<"$OUT")" = 1 ] || fail "find /dir/*.bin in $s1: $OUT"
expect_contains "$OUT" '"/dir/random.bin"'
expect_exit 0 mirage-restore find --device dev-b '*' --older 2000-01-01 --output json
python3 - "$OUT" <<'PY' || fail "find --older 2000-01-01: $OUT"
import json, sys
paths = sorted({json.loads(l)["path"] for l in sys.argv[1].splitlines()})
assert paths == ["/dir/text.txt", "/empty dir"], paths
PY
expect_exit 0 mirage-restore find --device dev-b 'hard*' --output text
head -1 <<<"$OUT" | grep -qE '^PATH +TYPE +SIZE +MTIME +SNAPSHOTS +FIRST +LAST$' || fail "find header: $OUT"
grep -qE "^/hard2 +file +6 B +.* 2 +$s1 +$s2\$" <<<"$OUT" || fail "find text row: $OUT"
expect_exit 0 mirage-restore find --device dev-b nothing-is-called-this --output text
expect_contains "$OUT" "no matches in 2 snapshots"
expect_exit 2 mirage-restore find --device dev-b x --newer yesterdayish
expect_exit 2 mirage-restore find --device dev-b x --all --snapshot "$s1"

# diff: every kind of change, with bytes; a path limits it; a path in neither is 3.
expect_exit 0 mirage-restore diff --device dev-b "$s1" "$s2" --output json
python3 - "$OUT" <<'PY' || fail "diff: $OUT"
import json, sys
d = json.loads(sys.argv[1])
got = [(c["path"], c["change"]) for c in d["changes"]]
want = [("/dir/new.bin", "added"), ("/dir/newdir", "added"), ("/dir/newdir/n.txt", "added"),
        ("/dir/text.txt", "modified"), ("/fifo", "type"), ("/name with spaces", "removed"), ("/setgid", "metadata")]
assert got == want, got
s = d["summary"]
assert s["added"] == {"entries": 3, "bytes": 100000 + 2 + 10}, s
assert s["removed"] == {"entries": 1, "bytes": 5}, s
assert s["modified"] == {"entries": 1, "bytes_before": 2000000, "bytes_after": 2000008}, s
# Only the changed subtrees are read: /, /dir, and /dir/newdir (both roots of / and /dir).
assert s["trees_read"] == 5, s
PY
expect_exit 0 mirage-restore diff --device dev-b "$s1" "$s2" /dir/newdir --output json
expect_contains "$OUT" '"path":"/dir/newdir/n.txt"'
expect_contains "$OUT" '"removed":{"bytes":0,"entries":0}'
expect_exit 0 mirage-restore diff --device dev-b "$s1" "$s2" --output text
head -1 <<<"$OUT" | grep -qE '^ +TYPE +BEFORE +AFTER +PATH$' || fail "diff header: $OUT"
grep -qE '^M +file +1\.9 MiB +1\.9 MiB +/dir/text.txt$' <<<"$OUT" || fail "diff text: $OUT"
grep -qE '^T +file +0 B +10 B +/fifo$' <<<"$OUT" || fail "diff type change: $OUT"
expect_contains "$OUT" "metadata only 1"
expect_exit 0 mirage-restore diff --device dev-b "$s2" "$s2" --output text
expect_contains "$OUT" "no differences"
expect_exit 3 mirage-restore diff --device dev-b "$s1" "$s2" /not/here
expect_exit 2 mirage-restore diff --device dev-b "$s1"

# dump: a file is its bytes; a directory a tar that GNU tar extracts to the same tree
# (modes, owners, ns mtimes, symlinks, hardlinks, xattrs and ACLs), that tarfile reads,
# and a zip; restore --to - is the same stream.
mirage-restore dump --device dev-b /dir/random.bin >"$TEST_TMP/random.bin"
cmp "$src/dir/random.bin" "$TEST_TMP/random.bin" || fail "dump of a file differs"
mirage-restore dump --device dev-b /dir >"$TEST_TMP/dir.tar"
mkdir "$TEST_TMP/x"
tar -C "$TEST_TMP/x" --numeric-owner --same-owner -p --xattrs --xattrs-include='*' -xf "$TEST_TMP/dir.tar"
expect_same_tree "$src/dir" "$TEST_TMP/x/dir"
mirage-restore --device dev-b --path /dir --to - >"$TEST_TMP/dir2.tar"
cmp "$TEST_TMP/dir.tar" "$TEST_TMP/dir2.tar" || fail "restore --to - differs from dump"
python3 - "$TEST_TMP/dir.tar" <<'PY' || fail "tarfile disagrees"
import os, tarfile, sys
t = {m.name: m for m in tarfile.open(sys.argv[1])}
assert t["dir/sub/hard1"].islnk() and t["dir/sub/hard1"].linkname == "dir/hello.txt", t["dir/sub/hard1"]
assert t["dir/rel-link"].issym() and t["dir/rel-link"].linkname == "hello.txt"
assert t["dir/hello.txt"].uid == (12345 if os.getuid() == 0 else os.getuid()), t["dir/hello.txt"].uid
assert t["dir/sub"].mode == 0o2775, oct(t["dir/sub"].mode)
assert t["dir/rel-link"].pax_headers["mtime"] == "981173106.123456789", t["dir/rel-link"].pax_headers
PY
mirage-restore dump --device dev-b --snapshot "$s1" / >"$TEST_TMP/all.tar" 2>"$TEST_TMP/dump.err"
expect_contains "$(cat "$TEST_TMP/dump.err")" "/socket: a socket, left out of the archive"
mkdir "$TEST_TMP/all"
tar -C "$TEST_TMP/all" --numeric-owner --same-owner -p --xattrs --xattrs-include='*' -xf "$TEST_TMP/all.tar"
# The root gets no member, a socket cannot be in a tar (warned), a sparse file is written whole.
for t in v1 all; do
  listing "$TEST_TMP/$t" | grep -v -e "^b'\.' " -e "^b'socket' " | sed 's/ sparse - $/ dense - /' >"$TEST_TMP/$t.list"
done
diff -u "$TEST_TMP/v1.list" "$TEST_TMP/all.list" >&2 || fail "dump / of $s1 extracted differs from the tree"
mirage-restore dump --device dev-b --archive zip /dir >"$TEST_TMP/dir.zip"
python3 - "$TEST_TMP/dir.zip" "$src/dir" <<'PY' || fail "zip differs"
import zipfile, sys, os
z = zipfile.ZipFile(sys.argv[1])
for name in ("hello.txt", "sub/hard1", "random.bin", "text.txt"):
    assert z.read("dir/" + name) == open(os.path.join(sys.argv[2], name), "rb").read(), name
PY
expect_exit 2 mirage-restore dump --device dev-b /dir/../x
expect_exit 3 mirage-restore dump --device dev-b /missing
expect_exit 2 mirage-restore dump --device dev-b /fifo --archive rar
expect_exit 2 mirage-restore --device dev-b --path /dir --path /empty --to -

# mirage stats: logical bytes are every snapshot's file bytes; the second snapshot
# shares nearly everything (and the sparse file's zeros are one chunk), so unique bytes
# are under half of them.
expect_exit 0 mirage stats --output json
python3 - "$OUT" "$TEST_TMP/v1" "$src" <<'PY' || fail "stats: $OUT"
import json, os, stat, sys
d = json.loads(sys.argv[1])
def file_bytes(root):
    total = 0
    for dirpath, dirs, files, fd in os.fwalk(os.fsencode(root)):
        for n in files:
            st = os.lstat(n, dir_fd=fd)
            if stat.S_ISREG(st.st_mode): total += st.st_size
    return total
dev = d["devices"][0]
assert dev["device_id"] == "dev-b" and dev["snapshots"] == 2, dev
assert dev["logical_bytes"] == file_bytes(sys.argv[2]) + file_bytes(sys.argv[3]), (dev, file_bytes(sys.argv[2]), file_bytes(sys.argv[3]))
assert 3000000 < dev["unique_bytes"] < dev["logical_bytes"] / 2, dev
assert 0 < dev["stored_bytes"] < dev["unique_bytes"] and dev["dedup_ratio"] > 2, dev
assert d["store"]["unique_bytes"] == dev["unique_bytes"] and d["store"]["devices"] == 1, d
PY
expect_exit 0 mirage stats --output text
head -1 <<<"$OUT" | grep -qE '^DEVICE +SNAPSHOTS +LOGICAL +UNIQUE +STORED +DEDUP +COMPRESSION$' || fail "stats header: $OUT"
grep -qE '^dev-b +2 +49\.6 MiB +.* [0-9]+\.[0-9]{2}x +[0-9.]+x$' <<<"$OUT" || fail "stats row: $OUT"
expect_exit 3 mirage stats --device no-such-device

# Over HTTP: a device's credential browses its own CVD only.
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL"
mkdir -p "$TEST_TMP/a"; printf 'a\n' >"$TEST_TMP/a/f"
expect_exit 5 mirage-centralize --root "$TEST_TMP/a" --device-id dev-a --output json
expect_exit 5 mirage-centralize --root "$src" --device-id dev-c --output json
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept dev-a >/dev/null
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept dev-c >/dev/null
mirage-centralize --root "$TEST_TMP/a" --device-id dev-a --output json >/dev/null
mirage-centralize --root "$src" --device-id dev-c --output json >/dev/null
cred="mdc_dev-a.$(cat "$MIRAGE_HOME/endpoint/dev-a/credential")"
b_snap=$(MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore snapshots --device dev-c --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["snapshot_id"])')
MIRAGE_TOKEN=$cred expect_exit 0 mirage-restore ls --device dev-a --output json
expect_contains "$OUT" '"path":"/f"'
for cmd in "ls --device dev-c" "find --device dev-c f" "diff --device dev-c $b_snap $b_snap" "dump --device dev-c /dir/hello.txt"; do
  MIRAGE_TOKEN=$cred expect_exit 4 mirage-restore $cmd
  expect_contains "$ERR" "own CVD"
done
MIRAGE_TOKEN=$cred expect_exit 4 mirage stats --device dev-a
# dev-c's snapshot id under dev-a's name: dev-a has no such snapshot.
MIRAGE_TOKEN=$cred expect_exit 3 mirage-restore ls --device dev-a --snapshot "$b_snap"
helpdesk=$(MIRAGE_TOKEN=$ADMIN_TOKEN mirage token create --role helpdesk --name desk --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
MIRAGE_TOKEN=$helpdesk expect_exit 0 mirage-restore find --device dev-c hello.txt --output json
expect_contains "$OUT" '"/dir/hello.txt"'
MIRAGE_TOKEN=$helpdesk expect_exit 0 mirage stats --output json
expect_contains "$OUT" '"device_id":"dev-c"'
echo ok

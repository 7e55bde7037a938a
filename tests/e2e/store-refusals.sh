#!/usr/bin/env bash
# A store that is damaged, gone or not ours is refused with the right exit code, never
# set up again as an empty store (issue 10, section 4), and --stdio clients get that code.
source "$(dirname "$0")/lib.sh"
need python3 sqlite3
src="$TEST_TMP/src"; mkdir -p "$src/etc"; head -c 300000 /dev/urandom >"$src/data.bin"; echo h >"$src/etc/hostname"
centralize_accepted "$src" dev1 >/dev/null
expect_exit 0 mirage check --output json
data="$MIRAGE_HOME"
[ "$(stat -c %a "$data")" = 700 ] || fail "embedded data directory mode $(stat -c %a "$data")"
[ "$(stat -c %a "$data/catalog.db")" = 600 ] || fail "catalog mode $(stat -c %a "$data/catalog.db")"
cp -a "$data" "$TEST_TMP/saved"
restore_store() { rm -rf "$data"; cp -a "$TEST_TMP/saved" "$data"; }

# An emptied catalog beside packs: exit 6 naming catalog.db, and nothing is written.
: >"$data/catalog.db"; rm -f "$data/catalog.db-wal" "$data/catalog.db-shm"
expect_exit 6 mirage check --read-data
expect_contains "$ERR" "catalog.db is empty"
expect_contains "$ERR" "pack files remain"
[ ! -s "$data/catalog.db" ] || fail "the emptied catalog was set up again"
expect_exit 6 mirage-restore snapshots --device dev1
expect_exit 6 mirage-serverd --data "$data" --listen 127.0.0.1:1
# A missing one: the same.
rm -f "$data/catalog.db"
expect_exit 6 mirage-centralize --root "$src" --device-id dev1
expect_contains "$ERR" "catalog.db is missing"
[ ! -e "$data/catalog.db" ] || fail "a missing catalog was created again"
# mirage-serverd repair indexes the packs into a new catalog (with a new admin token).
expect_exit 0 mirage-serverd repair --data "$data" --output json
expect_contains "$OUT" '"admin_token":"mrg_'
python3 - "$OUT" <<'PY' || fail "repair did not index the packs: $OUT"
import json, sys
r = json.loads(sys.argv[1]); assert r["packs_added"] >= 1 and r["chunks_indexed"] >= 2, r
PY
expect_exit 0 mirage check --read-data
restore_store

# A pack file the catalog does not know is reported; check --repair indexes it.
pack=$(find "$data/volumes" -name '*.pack' | head -1)
mkdir -p "$data/volumes/0/packs/00"
cp "$pack" "$data/volumes/0/packs/00/00112233445566778899aabbccddeeff.pack"
expect_exit 0 mirage check --output json
expect_contains "$OUT" '"notes":[{"message":"not in the catalog'
expect_exit 0 mirage check --output text
expect_contains "$OUT" "note: pack 00112233445566778899aabbccddeeff: not in the catalog"
expect_exit 0 mirage check --repair --output json
expect_contains "$OUT" '"packs_added":1'
expect_exit 0 mirage check --read-data
# A pack file that is gone: check says so; repair drops its index entries, and the
# check still fails (the snapshots that need them are incomplete) until they are sent again.
restore_store
rm "$(find "$data/volumes" -name '*.pack' | head -1)"
expect_exit 6 mirage check
expect_contains "$OUT" "missing"
expect_exit 6 mirage check --repair --output json
python3 - "$OUT" <<'PY' || fail "repair did not drop the lost entries: $OUT"
import json, sys
r = json.loads(sys.argv[1])["repair"]; assert r["entries_dropped"] >= 1, r
PY
restore_store

# A catalog that lost its newest transactions (a damaged WAL, an older catalog.db put
# back) is reported: the newest commit is recorded beside it.
touch -r "$src" "$TEST_TMP/src.mtime"   # the tree is compared with restores below
echo more >"$src/more.txt"
expect_exit 0 mirage-centralize --root "$src" --device-id dev1 --output json
expect_exit 0 mirage check
cp "$TEST_TMP/saved/catalog.db" "$data/catalog.db"; rm -f "$data/catalog.db-wal" "$data/catalog.db-shm"
expect_exit 6 mirage check --output json
expect_contains "$OUT" "last transactions were lost"
rm "$src/more.txt"; touch -r "$TEST_TMP/src.mtime" "$src"
restore_store

# A catalog SQLite cannot read: integrity (6), not "unreachable".
printf 'this is not a database at all, just text that fills the first page..........' | dd of="$data/catalog.db" conv=notrunc status=none
expect_exit 6 mirage check
restore_store

# A data directory owned by another user is refused (4), even for root.
if [ "$(id -u)" = 0 ]; then
  chown -R nobody "$data"
  expect_exit 4 mirage check
  expect_contains "$ERR" "owned by uid"
  # A refused sync leaves nothing behind: no state directory made, nothing in the store.
  expect_exit 4 mirage-centralize --root "$src" --device-id dev-refused --state "$TEST_TMP/refused-state"
  expect_contains "$ERR" "owned by uid"
  [ ! -e "$TEST_TMP/refused-state" ] || fail "a refused centralize made its state directory"
  [ ! -e "$data/endpoint/dev-refused" ] || fail "a refused centralize made a state directory in the store"
  chown -R root "$data"
fi
expect_exit 0 mirage check

# A store on a read-only filesystem is checked and restored from; writing to it is
# not permitted (4), not "unreachable".
if [ "$(id -u)" = 0 ] && mkdir -p "$TEST_TMP/ro" && mount --bind "$data" "$TEST_TMP/ro" 2>/dev/null; then
  trap 'umount "$TEST_TMP/ro" 2>/dev/null; cleanup' EXIT
  if mount -o remount,bind,ro "$TEST_TMP/ro" 2>/dev/null; then
    MIRAGE_HOME="$TEST_TMP/ro" expect_exit 0 mirage check --read-data --output json
    expect_contains "$OUT" '"ok":true'
    MIRAGE_HOME="$TEST_TMP/ro" expect_exit 0 mirage-restore --device dev1 --path / --to "$TEST_TMP/from-ro"
    expect_same_tree "$src" "$TEST_TMP/from-ro"
    MIRAGE_HOME="$TEST_TMP/ro" expect_exit 4 mirage-centralize --root "$src" --device-id dev1
    expect_contains "$ERR" "Read-only file system"
    MIRAGE_HOME="$TEST_TMP/ro" expect_exit 4 mirage gc
    expect_contains "$ERR" "gc.lock: Read-only file system"
    # A catalog write is said as such, not as the SQL statement that met it.
    MIRAGE_HOME="$TEST_TMP/ro" expect_exit 4 mirage device rename dev1 dev9 --output text
    expect_contains "$ERR" "catalog.db may not be written"
    case "$ERR" in *INSERT* | *UPDATE*) fail "SQL in the error: $ERR" ;; esac
  fi
  umount "$TEST_TMP/ro"
  trap cleanup EXIT
fi

# MIRAGE_HOME behind a dangling symlink: not found (3).
ln -s "$TEST_TMP/nowhere" "$TEST_TMP/dangling"
MIRAGE_HOME="$TEST_TMP/dangling" expect_exit 3 mirage check
expect_contains "$ERR" "dangling"
echo ok

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
  chown -R root "$data"
fi
expect_exit 0 mirage check

# MIRAGE_HOME behind a dangling symlink: not found (3).
ln -s "$TEST_TMP/nowhere" "$TEST_TMP/dangling"
MIRAGE_HOME="$TEST_TMP/dangling" expect_exit 3 mirage check
expect_contains "$ERR" "dangling"
echo ok

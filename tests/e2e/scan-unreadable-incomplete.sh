#!/usr/bin/env bash
# What a scan cannot read is not lost in silence: a file whose open fails (EACCES) and
# a directory that cannot be opened are counted and named in the JSON, in the stored
# snapshot's stats and in its snapshot.created event; the snapshot IS committed, and
# mirage-centralize exits 1 saying it is incomplete. The rest restores.
# As root, the scan runs as nobody (root reads everything).
source "$(dirname "$0")/lib.sh"
need python3
as_scanner() {
  if [ "$(id -u)" = 0 ]; then
    need setpriv
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
  else
    "$@"
  fi
}
chmod 755 "$TEST_TMP"
src="$TEST_TMP/src"; mkdir -p "$src/docs" "$src/locked"
echo readable >"$src/docs/ok.txt"
echo secret >"$src/docs/secret.txt"; chmod 000 "$src/docs/secret.txt"
echo inside >"$src/locked/inner.txt"; chmod 000 "$src/locked"
state="$TEST_TMP/state"; mkdir -p "$state"
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$MIRAGE_HOME"; chown -R nobody:nogroup "$MIRAGE_HOME" "$state"
fi
run() { as_scanner env MIRAGE_HOME="$MIRAGE_HOME" "$@"; }

expect_exit 5 run mirage-centralize --root "$src" --device-id unread --state "$state" --output json
run mirage-centralize accept unread --output json >/dev/null
expect_exit 1 run mirage-centralize --root "$src" --device-id unread --state "$state" --output json
expect_contains "$ERR" '"code":"failed"'
expect_contains "$ERR" 'is incomplete: 2 entries could not be read (first: /docs/secret.txt: '
printf '%s' "$OUT" >"$TEST_TMP/sync.json"
python3 - "$TEST_TMP/sync.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
s = doc["stats"]
assert s["unreadable"] == 2, s
got = {e["path"]: e["reason"] for e in s["unreadable_entries"]}
assert set(got) == {"/docs/secret.txt", "/locked"}, got
assert "Permission denied" in got["/docs/secret.txt"], got
assert "kept empty" in got["/locked"], got
assert doc["snapshot"]["snapshot_id"], doc
assert doc["incomplete"].startswith("snapshot " + doc["snapshot"]["snapshot_id"] + " is incomplete"), doc
PY
# The committed snapshot's listing and its event carry the count and the names.
expect_exit 0 run mirage-restore snapshots --device unread --output json
expect_contains "$OUT" '"unreadable":2'
expect_contains "$OUT" '"path":"/docs/secret.txt"'
expect_exit 0 run mirage-restore snapshots --device unread --output text
expect_contains "$OUT" "incomplete: 2 entries left out"
# Text output names them too, and still exits 1.
expect_exit 1 run mirage-centralize --root "$src" --device-id unread --state "$state" --output text
expect_contains "$OUT" "2 entries could not be read:"
expect_contains "$OUT" "/docs/secret.txt: open: Permission denied"
expect_contains "$ERR" "mirage-centralize: error: snapshot "
expect_exit 0 run mirage events --device unread --output json
expect_contains "$OUT" '"snapshot.created"'
expect_contains "$OUT" '"unreadable":2'
# The restore runs as root, which refuses a data directory another user owns: the
# store becomes root's first.
if [ "$(id -u)" = 0 ]; then chown -R root:root "$MIRAGE_HOME"; fi
# Everything else restores; the unreadable file is absent, the locked directory empty.
expect_exit 0 mirage-restore --device unread --path / --to "$TEST_TMP/back"
cmp "$src/docs/ok.txt" "$TEST_TMP/back/docs/ok.txt"
[ ! -e "$TEST_TMP/back/docs/secret.txt" ] || fail "unreadable file restored"
[ -d "$TEST_TMP/back/locked" ] || fail "locked directory missing"
[ -z "$(ls -A "$TEST_TMP/back/locked" 2>/dev/null)" ] || fail "locked directory not empty"
echo ok

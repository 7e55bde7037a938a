#!/usr/bin/env bash
# Relative MIRAGE_HOME, --root and --state work: the scanner's walk changes the working
# directory, and connections opened during it (one per upload worker) must still find
# the same store, never one created inside the scanned tree.
source "$(dirname "$0")/lib.sh"
cd "$TEST_TMP"
mkdir -p src/a/b
head -c 12000000 /dev/urandom >src/a/b/big     # enough for both workers to upload
head -c 6000000 /dev/urandom >src/a/other
export MIRAGE_HOME=store
expect_exit 5 mirage-centralize --root src --device-id rel --state state
mirage-centralize accept rel >/dev/null
expect_exit 0 mirage-centralize --root src --device-id rel --state state --output json
expect_contains "$OUT" '"snapshot_id"'
[ -z "$(find src -name catalog.db)" ] || fail "a store was created inside the scanned tree"
expect_exit 0 mirage-restore --device rel --path / --to back
expect_same_tree src back
expect_exit 0 mirage check --read-data --output json
expect_contains "$OUT" '"ok":true'
# A server's data directory given relative: made and served whole (its volume too).
expect_exit 0 mirage-serverd init --data rel-data --output json
expect_exit 0 env MIRAGE_HOME=rel-data mirage volume list --output json
expect_contains "$OUT" "\"path\":\"$TEST_TMP/rel-data/volumes/0\""
echo ok

#!/usr/bin/env bash
# Several endpoints syncing at once into one fresh embedded store (each with its own
# server processes) all succeed; the store has one volume and checks clean.
source "$(dirname "$0")/lib.sh"
need sqlite3
for i in 1 2 3 4; do
  mkdir -p "$TEST_TMP/src$i/shared" "$TEST_TMP/src$i/own"
  head -c 300000 /dev/urandom >"$TEST_TMP/src$i/own/data"
  seq 1 50000 >"$TEST_TMP/src$i/shared/numbers"   # the same content on every endpoint
done
for i in 1 2 3 4; do mirage-centralize --root "$TEST_TMP/src$i" --device-id "dev$i" --output json >"$TEST_TMP/reg$i" 2>&1 & done
wait || true
for i in 1 2 3 4; do grep -q pending "$TEST_TMP/reg$i" || fail "dev$i did not register: $(cat "$TEST_TMP/reg$i")"; done
[ "$(sqlite3 "$MIRAGE_HOME/catalog.db" 'SELECT count(*) FROM volumes')" = 1 ] || fail "more than one volume 0"
for i in 1 2 3 4; do mirage-centralize accept "dev$i" >/dev/null; done
pids=()
for i in 1 2 3 4; do mirage-centralize --root "$TEST_TMP/src$i" --device-id "dev$i" --output json >"$TEST_TMP/out$i" 2>&1 & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent centralize failed: $(cat "$TEST_TMP"/out*)"; done
expect_exit 0 mirage check --read-data --output json
expect_contains "$OUT" '"snapshots":4'
for i in 1 2 3 4; do
  mirage-restore --device "dev$i" --path / --to "$TEST_TMP/back$i" >/dev/null
  expect_same_tree "$TEST_TMP/src$i" "$TEST_TMP/back$i"
done
echo ok

#!/usr/bin/env bash
# The endpoint runs unattended over HTTPS with its own device credential (no
# MIRAGE_TOKEN): a --watch started while the device is pending keeps waiting (logging
# that it is pending) instead of dying, syncs within seconds of an admin accepting it,
# and carries out orders queued with --wait within seconds though its interval is an
# hour. A second plain sync while pending exits 5, not 4. A --wait that runs out exits
# 75 in both tools. The endpoint's state directory is private (0700, files 0600), and
# a shared one (/tmp-like) is refused.
source "$(dirname "$0")/lib.sh"
need openssl python3 timeout
pki=$TEST_TMP/pki
make_pki "$pki"
start_http_server "$TEST_TMP/server" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
export MIRAGE_SERVER="$SERVER_URL"
src=$TEST_TMP/src
mkdir -p "$src/etc" "$src/home/u"; echo one >"$src/etc/app.conf"; echo mine >"$src/home/u/notes"

expect_exit 5 mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-u --output json
expect_contains "$OUT" '"state":"pending"'
# Pending, second time (now with its credential): still 5 ("wait"), not 4 ("refused").
expect_exit 5 mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-u --output json
expect_contains "$OUT" '"state":"pending"'

mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-u --watch --interval 60m --poll 0.2s \
  --output json >"$TEST_TMP/watch.log" 2>"$TEST_TMP/watch.err" &
watcher=$!
trap 'kill $watcher 2>/dev/null || true; stop_server; wait $watcher 2>/dev/null || true; cleanup' EXIT
synced() {  # synced N: until the watcher printed N accepted sync lines (at most 30 s)
  for _ in $(seq 1 150); do
    [ "$(grep -c '"state":"accepted"' "$TEST_TMP/watch.log")" -ge "$1" ] && return 0
    kill -0 $watcher 2>/dev/null || fail "the watcher died: $(cat "$TEST_TMP/watch.err")"
    sleep 0.2
  done
  fail "expected $1 accepted syncs: $(cat "$TEST_TMP/watch.log") $(cat "$TEST_TMP/watch.err")"
}
for _ in $(seq 1 100); do grep -q pending "$TEST_TMP/watch.err" && break; sleep 0.1; done
expect_contains "$(cat "$TEST_TMP/watch.err")" "pending"
sleep 1
kill -0 $watcher 2>/dev/null || fail "a watcher started while pending died: $(cat "$TEST_TMP/watch.err")"
admin mirage-centralize --ca-file "$pki/ca.pem" accept dev-u >/dev/null
synced 1

# Orders queued with --wait are carried out at once (interval 60m, no MIRAGE_TOKEN on the endpoint).
start=$(date +%s)
expect_exit 0 admin timeout 60 mirage-centralize --ca-file "$pki/ca.pem" request --device dev-u --wait --timeout 45 --output json
expect_contains "$OUT" '"state":"done"'
mkdir -p "$TEST_TMP/base/etc"; echo from-layer >"$TEST_TMP/base/etc/layer.conf"
admin mirage-capture --ca-file "$pki/ca.pem" base --root "$TEST_TMP/base" --name ubase --output json >/dev/null
expect_exit 0 admin timeout 60 mirage-assign --ca-file "$pki/ca.pem" --device dev-u --base ubase --wait --timeout 45 --output json
expect_contains "$OUT" '"state":"done"'
[ "$(cat "$src/etc/layer.conf")" = from-layer ] || fail "the layer order was not carried out"
expect_exit 0 admin timeout 60 mirage-assign --ca-file "$pki/ca.pem" --device dev-u --enforce --wait --timeout 45 --output json
[ $(( $(date +%s) - start )) -lt 40 ] || fail "the orders waited for the interval"
if grep -q "order check failed" "$TEST_TMP/watch.err"; then fail "order checks failed: $(cat "$TEST_TMP/watch.err")"; fi

# The state directory is private.
state=$MIRAGE_HOME/endpoint/dev-u
[ "$(stat -c %a "$state")" = 700 ] || fail "state directory is $(stat -c %a "$state")"
for f in "$state"/*; do
  [ -f "$f" ] || continue
  [ "$(stat -c %a "$f")" = 600 ] || fail "$f is $(stat -c %a "$f")"
done
[ -f "$state/trees.db" ] || fail "no trees.db to check"

kill -TERM $watcher
for _ in $(seq 1 50); do kill -0 $watcher 2>/dev/null || break; sleep 0.1; done
wait $watcher || fail "the watcher exited $? on SIGTERM"

# A --wait that runs out (no endpoint is syncing): 75, "retry later", in both tools.
expect_exit 75 admin timeout 60 mirage-centralize --ca-file "$pki/ca.pem" request --device dev-u --wait --timeout 1 --output json
expect_contains "$ERR" "pending"
expect_exit 75 admin timeout 60 mirage-assign --ca-file "$pki/ca.pem" --device dev-u --enforce --wait --timeout 1 --output json
expect_contains "$ERR" "pending"

# Loose modes left by an older version are tightened on the next sync.
chmod 755 "$state"; chmod 644 "$state"/*
expect_exit 0 mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-u --output json
[ "$(stat -c %a "$state")" = 700 ] || fail "state directory left at $(stat -c %a "$state")"
[ "$(stat -c %a "$state/trees.db")" = 600 ] || fail "trees.db left at $(stat -c %a "$state/trees.db")"
# A shared directory (sticky, world-writable) is refused as the state, and left as it is.
mkdir -m 1777 "$TEST_TMP/shared"
expect_exit 2 mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-u --state "$TEST_TMP/shared" --output json
expect_contains "$ERR" "shared"
[ "$(stat -c %a "$TEST_TMP/shared")" = 1777 ] || fail "a shared state directory was changed"
echo ok

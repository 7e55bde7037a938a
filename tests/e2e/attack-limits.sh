#!/usr/bin/env bash
# Every server limit has a default and a flag (issue 10): `mirage-serverd limits` lists
# the effective values; a bad --limit is a usage error naming the limit and its range;
# a server started with lowered limits refuses at the new bounds with the right status
# and error code; and with a small --max-body-memory and a short body-wait, uploads
# really get 503 with Retry-After and two mirage-centralize at once still complete.
source "$(dirname "$0")/lib.sh"
need python3 curl
attack() { python3 "$MIRAGE_SOURCE/tests/e2e/attack.py" "$SERVER_URL" "$@"; }
field() {  # field NAME KEY: a row's KEY in the `limits` JSON read from $OUT
  python3 -c 'import json,sys; print(next(r for r in json.load(sys.stdin)["limits"] if r["name"] == sys.argv[1])[sys.argv[2]])' \
    "$1" "$2" <<<"$OUT"
}

# The list: defaults, and what --limit and the dedicated flags make of them.
expect_exit 0 mirage-serverd limits --output json
[ "$(field upload-body value)" = $((80 << 20)) ] || fail "upload-body default: $OUT"
[ "$(field pending-devices value)" = 10000 ] || fail "pending-devices default"
[ "$(field body-wait value)" = 20 ] || fail "body-wait follows --read-timeout (20)"
[ "$(field frame-header max)" = $((16 << 20)) ] || fail "frame-header ceiling"
[ "$(field hostname value)" = 253 ] || fail "hostname is listed"
[ "$(field max-body-memory flag)" = --max-body-memory ] || fail "the dedicated flags are listed"
expect_exit 0 mirage-serverd limits --limit upload-body=256K --limit pending-devices=2 --read-timeout 7 \
  --max-body-memory 1M --output json
[ "$(field upload-body value)" = $((256 << 10)) ] || fail "--limit upload-body=256K not shown: $OUT"
[ "$(field upload-body default)" = $((80 << 20)) ] || fail "upload-body default changed"
[ "$(field pending-devices value)" = 2 ] || fail "--limit pending-devices=2 not shown"
[ "$(field body-wait value)" = 7 ] || fail "body-wait does not follow --read-timeout 7"
[ "$(field max-body-memory value)" = $((1 << 20)) ] || fail "--max-body-memory not shown"
expect_exit 0 mirage-serverd --limit body-wait=3 limits --read-timeout 7 --output json
[ "$(field body-wait value)" = 3 ] || fail "--limit body-wait=3 before the subcommand not shown"
expect_exit 0 mirage-serverd limits --output text
expect_contains "$OUT" "pending-devices"
expect_contains "$OUT" "80M"

# Bad values: exit 2, naming the limit and the range; the server does not start.
expect_exit 2 mirage-serverd limits --limit no-such=1
expect_contains "$ERR" "no-such"
for spec in upload-body=0 upload-body=-1 upload-body=5G upload-body=lots pending-devices=0 pending-devices=1K \
  body-wait=0 body-wait=99999 frame-depth=65 frame-header=17M; do
  expect_exit 2 mirage-serverd limits --limit "$spec"
  expect_contains "$ERR" "${spec%%=*}"
  expect_contains "$ERR" "from "
done
expect_exit 2 mirage-serverd limits --limit upload-body
expect_exit 2 mirage-serverd limits --limit read-timeout=5
expect_contains "$ERR" "--read-timeout"
expect_exit 2 timeout 10 mirage-serverd --data "$TEST_TMP/never" --listen 127.0.0.1:1 --limit frame-depth=1000
expect_exit 2 timeout 10 mirage-serverd --stdio --data "$TEST_TMP/never" --limit stats=0 </dev/null
[ ! -e "$TEST_TMP/never" ] || fail "a refused --limit still made the data directory"

# Lowered limits take effect over HTTP: refused at the new bound, taken under it.
start_http_server "$TEST_TMP/server" --read-timeout 5 --limit upload-body=256K --limit request-body=8K \
  --limit anonymous-body=4K --limit frame-depth=8 --limit frame-header=64K --limit inventory=1K \
  --limit get-ids=2 --limit pending-devices=2
attack limits "$ADMIN_TOKEN"
# The client of a stranger past pending-devices is told so: unavailable, exit 75.
mkdir -p "$TEST_TMP/root3/etc"; echo three >"$TEST_TMP/root3/etc/hostname"
expect_exit 75 env MIRAGE_SERVER="$SERVER_URL" mirage-centralize --root "$TEST_TMP/root3" --device-id stranger-3 \
  --state "$TEST_TMP/state3"
expect_contains "$ERR" "pending-devices"
kill -0 "$SERVER_PID" || fail "server died"
stop_server

# Over stdio too: a header nested past frame-depth is refused (exit 2 ends the stream).
printf '{"v":1,"id":[[[[[[[[[[1]]]]]]]]]],"method":"server.info"}\n' >"$TEST_TMP/deep.frame"
expect_exit 2 mirage-serverd --stdio --data "$TEST_TMP/stdio" --limit frame-depth=8 <"$TEST_TMP/deep.frame"
expect_contains "$OUT" "nested deeper than 8"
expect_exit 0 mirage-serverd --stdio --data "$TEST_TMP/stdio" <"$TEST_TMP/deep.frame"
expect_contains "$OUT" '"result"'

# The body budget: 1 MiB for all, a 1 s wait. A slow upload holds all of it for 4 s,
# so every request of two mirage-centralize started meanwhile waits a second, gets
# 503 with Retry-After: 1 and is sent again; when the holder is done they share the
# budget (each 4 MiB upload batch takes all of it) and both complete.
start_http_server "$TEST_TMP/server2" --max-body-memory 1M --limit body-wait=1
export MIRAGE_SERVER="$SERVER_URL"
for d in a b; do
  mkdir -p "$TEST_TMP/root-$d/etc" "$TEST_TMP/root-$d/data"
  echo "host-$d" >"$TEST_TMP/root-$d/etc/hostname"
  for i in 1 2 3; do head -c 6000000 /dev/urandom >"$TEST_TMP/root-$d/data/file$i.bin"; done
  expect_exit 5 mirage-centralize --root "$TEST_TMP/root-$d" --device-id "dev-$d" --state "$TEST_TMP/state-$d"
  MIRAGE_TOKEN="$ADMIN_TOKEN" mirage-centralize accept "dev-$d" >/dev/null
done
attack hold "$ADMIN_TOKEN" 4 600000 >"$TEST_TMP/hold.out" &
hold_pid=$!
for _ in $(seq 1 50); do grep -q holding "$TEST_TMP/hold.out" && break; sleep 0.1; done
grep -q holding "$TEST_TMP/hold.out" || fail "the budget holder did not start"
pids=()
for d in a b; do
  mirage-centralize --root "$TEST_TMP/root-$d" --device-id "dev-$d" --state "$TEST_TMP/state-$d" --output json \
    >"$TEST_TMP/out-$d" 2>"$TEST_TMP/err-$d" &
  pids+=($!)
done
for i in 0 1; do
  rc=0; wait "${pids[$i]}" || rc=$?
  [ "$rc" = 0 ] || fail "mirage-centralize ${i} exited $rc: $(cat "$TEST_TMP/err-a" "$TEST_TMP/err-b")"
done
wait "$hold_pid" || fail "the budget holder failed"
refusals=$(curl -sf "$SERVER_URL/metrics" | awk '/^mirage_body_budget_refusals_total / {print $2}')
echo "503 refusals for the body budget: $refusals"
[ "${refusals:-0}" -ge 2 ] || fail "no request was refused for the body budget (the retry path was not exercised)"
for d in a b; do
  expect_exit 0 env MIRAGE_TOKEN="$ADMIN_TOKEN" mirage-restore snapshots --device "dev-$d" --output json
  expect_contains "$OUT" '"snapshot_id"'
done
kill -0 "$SERVER_PID" || fail "server died"
echo ok

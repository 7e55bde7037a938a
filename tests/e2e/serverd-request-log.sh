#!/usr/bin/env bash
# mirage-serverd logs one line per HTTP request to stderr (method, caller, role, status,
# duration) at the default --log-level info, and none at warn; the line names the
# caller, never its token, and a made-up method name never reaches it. /metrics counts
# accepted devices by the age of their last sync, without a label per device.
source "$(dirname "$0")/lib.sh"
need python3 curl
MIRAGE_TEST_NOW=2026-04-01T12:00:00Z start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
mkdir -p "$TEST_TMP/src/etc"; echo hello >"$TEST_TMP/src/etc/motd"
expect_exit 5 mirage-centralize --root "$TEST_TMP/src" --device-id dev-log --output json
expect_exit 0 mirage-centralize accept dev-log --output json
expect_exit 5 mirage-centralize --root "$TEST_TMP/src" --device-id dev-never --output json
expect_exit 0 mirage-centralize accept dev-never --output json
expect_exit 0 mirage-centralize --root "$TEST_TMP/src" --device-id dev-log --output json
expect_exit 0 mirage device list --output json
expect_exit 4 mirage --token not-a-token device list
expect_exit 4 mirage --token "" device delete dev-log
curl -s -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" -H 'X-Mirage-Method: evil"method' \
  --data-binary $'{"v":1,"method":"evil\\nmethod"}\n' "$SERVER_URL/v1/rpc"
log="$TEST_TMP/server.log"
grep -E '^mirage-serverd: request method=device\.list caller=admin role=admin status=200 ms=[0-9]+\.[0-9]{3}$' "$log" >/dev/null ||
  fail "no request line for device.list: $(tail -5 "$log")"
grep -E '^mirage-serverd: request method=snapshot\.commit caller=admin role=admin status=200 ms=' "$log" >/dev/null ||
  fail "no request line for the device's commit: $(grep request "$log" | tail -5)"
grep -E '^mirage-serverd: request method=device\.list caller=- role=anonymous status=401 ms=[0-9.]+ error=permission$' "$log" >/dev/null ||
  fail "no request line for the refused token: $(grep request "$log" | tail -5)"
grep -E '^mirage-serverd: request method=- caller=admin role=admin status=400 ms=[0-9.]+ error=usage$' "$log" >/dev/null ||
  fail "the made-up method was not logged as '-': $(grep request "$log" | tail -5)"
grep -q evil "$log" && fail "a method name the client made up reached the log"
grep -qF "$ADMIN_TOKEN" "$log" && fail "the log holds the admin token"
grep -q "not-a-token" "$log" && fail "the log holds a token a client sent"
lines=$(grep -c '^mirage-serverd: request ' "$log")
[ "$lines" -ge 8 ] || fail "expected a line per request, got $lines"

# /metrics: dev-log synced now, dev-never never; no series names a device.
curl -s "$SERVER_URL/metrics" >"$TEST_TMP/metrics"
grep -qx 'mirage_devices_last_sync{age="1h"} 1' "$TEST_TMP/metrics" || fail "$(grep last_sync "$TEST_TMP/metrics")"
grep -qx 'mirage_devices_last_sync{age="never"} 1' "$TEST_TMP/metrics" || fail "$(grep last_sync "$TEST_TMP/metrics")"
grep -qx 'mirage_devices_last_sync{age="older"} 0' "$TEST_TMP/metrics" || fail "$(grep last_sync "$TEST_TMP/metrics")"
grep -q 'dev-log\|dev-never' "$TEST_TMP/metrics" && fail "/metrics names a device"

# --log-level warn: no request lines.
stop_server
mirage-serverd --data "$TEST_TMP/server" --listen 127.0.0.1:0 --log-level loud 2>"$TEST_TMP/bad.log" && fail "--log-level loud accepted"
grep -q "log-level" "$TEST_TMP/bad.log" || fail "--log-level loud: $(cat "$TEST_TMP/bad.log")"
port=$(( 20000 + RANDOM % 20000 ))
mirage-serverd --data "$TEST_TMP/server" --listen "127.0.0.1:$port" --log-level warn 2>"$TEST_TMP/quiet.log" &
SERVER_PID=$!
for _ in $(seq 1 50); do grep -q serving "$TEST_TMP/quiet.log" 2>/dev/null && break; sleep 0.1; done
grep -q serving "$TEST_TMP/quiet.log" || fail "the quiet server did not start: $(cat "$TEST_TMP/quiet.log")"
expect_exit 0 mirage --server "http://127.0.0.1:$port" device list --output json
grep -q ' request ' "$TEST_TMP/quiet.log" && fail "--log-level warn still logged requests"
echo ok

#!/usr/bin/env bash
# Hostile input to the HTTP server (issue 10, section 2): nesting, oversized fields and
# bodies, made-up metrics labels, slow clients, auth edge cases, device takeover, read
# scoping, tokens, file modes, binding. After each attack the server still answers
# /healthz within a second, and nothing refused was stored.
source "$(dirname "$0")/lib.sh"
need python3 curl
attack() { python3 "$MIRAGE_SOURCE/tests/e2e/attack.py" "$SERVER_URL" "$@"; }
rpc() {  # rpc TOKEN JSON-HEADER: prints the HTTP status; the reply is in $TEST_TMP/reply
  local auth=()
  [ -n "$1" ] && auth=(-H "Authorization: Bearer $1")
  curl -s -o "$TEST_TMP/reply" -w '%{http_code}' "${auth[@]}" --data-binary "$2"$'\n' "$SERVER_URL/v1/rpc"
}
start_http_server "$TEST_TMP/server" --http-threads 8 --read-timeout 2
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"

attack nesting "$ADMIN_TOKEN"
attack fields "$ADMIN_TOKEN"
attack bodies "$ADMIN_TOKEN"
attack uploads "$ADMIN_TOKEN" 12 60
attack metrics "$ADMIN_TOKEN"
attack auth "$ADMIN_TOKEN"
attack slowloris 40 2
attack headers
attack idle 200
kill -0 "$SERVER_PID" || fail "server died under attack"

# Files: the data directory is 0700, the catalog 0600.
[ "$(stat -c %a "$TEST_TMP/server")" = 700 ] || fail "data directory mode $(stat -c %a "$TEST_TMP/server")"
[ "$(stat -c %a "$TEST_TMP/server/catalog.db")" = 600 ] || fail "catalog mode $(stat -c %a "$TEST_TMP/server/catalog.db")"

# Device takeover: an accepted device with no credential on file is not given one by
# whoever registers first: the registration waits for an admin's re-enrolment (409,
# reason reenroll), and its secret reads nothing meanwhile.
[ "$(rpc "$ADMIN_TOKEN" '{"v":1,"id":1,"method":"device.register","params":{"device_id":"victim"}}')" = 200 ] || fail "register victim"
mirage-centralize accept victim >/dev/null
hash=$(printf attacker-secret | sha256sum | cut -c1-64)
[ "$(rpc "" '{"v":1,"id":1,"method":"device.register","params":{"device_id":"victim","credential_hash":"'"$(printf %s "$hash")"'"}}')" = 409 ] \
  || fail "an anonymous register set the credential of an accepted device: $(cat "$TEST_TMP/reply")"
expect_contains "$(cat "$TEST_TMP/reply")" '"reason":"reenroll"'
[ "$(rpc "mdc_victim.attacker-secret" '{"v":1,"id":1,"method":"snapshot.list","params":{"device_id":"victim"}}')" = 409 ] \
  || fail "the attacker's credential works"
expect_contains "$(cat "$TEST_TMP/reply")" "awaits re-enrolment"
expect_exit 0 mirage-centralize reject victim --reenroll --output json
[ "$(rpc "mdc_victim.attacker-secret" '{"v":1,"id":1,"method":"snapshot.list","params":{"device_id":"victim"}}')" = 401 ] \
  || fail "the attacker's credential works once its registration was dropped"
# An admin may also delete it; then the device registers anew.
expect_exit 0 mirage device delete victim --output json
expect_contains "$OUT" '"deleted":true'
expect_exit 3 mirage device delete victim

# Read scoping: a device reads only the layers its orders name.
mkdir -p "$TEST_TMP/ref/etc" "$TEST_TMP/ref/usr/bin" "$TEST_TMP/dev/etc"
echo secret-tool >"$TEST_TMP/ref/usr/bin/tool"; echo ref >"$TEST_TMP/ref/etc/hostname"
echo dev >"$TEST_TMP/dev/etc/hostname"
mirage-capture base --root "$TEST_TMP/ref" --name private-base --output json >/dev/null
(unset MIRAGE_TOKEN; expect_exit 5 mirage-centralize --root "$TEST_TMP/dev" --device-id scoped --state "$TEST_TMP/state")
mirage-centralize accept scoped >/dev/null
(unset MIRAGE_TOKEN; mirage-centralize --root "$TEST_TMP/dev" --device-id scoped --state "$TEST_TMP/state" >/dev/null)
secret=$(tr -d '\n' <"$TEST_TMP/state/credential")
[ "$(rpc "mdc_scoped.$secret" '{"v":1,"id":1,"method":"layer.get","params":{"ref":"private-base"}}')" = 403 ] \
  || fail "a device read a layer no order of its names: $(head -c 300 "$TEST_TMP/reply")"
mirage-assign --device scoped --base private-base --output json >/dev/null
[ "$(rpc "mdc_scoped.$secret" '{"v":1,"id":1,"method":"layer.get","params":{"ref":"private-base@1"}}')" = 200 ] \
  || fail "a device cannot read the layer its order names: $(head -c 300 "$TEST_TMP/reply")"

# Tokens: expiry, rotation, the last admin token.
expect_exit 0 mirage token create --name short --role helpdesk --expires 1s --output json
short=$(printf %s "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
expect_contains "$OUT" '"expires":"'
sleep 1.5
expect_exit 4 mirage device list --token "$short"
expect_exit 0 mirage token create --name desk --role helpdesk --output json
old=$(printf %s "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
expect_exit 0 mirage token rotate desk --output json
new=$(printf %s "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
expect_exit 4 mirage device list --token "$old"
expect_exit 0 mirage device list --token "$new"
expect_exit 5 mirage token revoke admin
expect_contains "$ERR" "last live admin token"
MIRAGE_TOKEN= expect_exit 4 mirage device list
expect_exit 0 mirage token list --output json
expect_contains "$OUT" '"expired":true'

# Binding: a second server on the same port fails; a bad port is a usage error.
port=${SERVER_URL##*:}
expect_exit 75 timeout 10 mirage-serverd --data "$TEST_TMP/server" --listen "127.0.0.1:$port"
expect_contains "$ERR" "cannot bind"
expect_exit 2 mirage-serverd --data "$TEST_TMP/server" --listen 127.0.0.1:99999
expect_exit 2 mirage-serverd --data "$TEST_TMP/server" --listen 127.0.0.1:8x

kill -0 "$SERVER_PID" || fail "server died"
curl -sf --max-time 1 "$SERVER_URL/healthz" >/dev/null || fail "/healthz"
# Peak memory under all of the above stays under the documented cap (256 MiB).
peak_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
echo "server peak memory: $((peak_kib / 1024)) MiB"
# (Not under the sanitizers: ASan alone keeps 256 MiB of freed memory in quarantine.)
if [ -z "${ASAN_OPTIONS:-}${TSAN_OPTIONS:-}" ]; then
  [ "$peak_kib" -lt $((256 * 1024)) ] || fail "server peak memory $((peak_kib / 1024)) MiB is over 256 MiB"
fi
echo ok

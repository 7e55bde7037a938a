#!/usr/bin/env bash
# The same round trip over HTTP: a token is required, a wrong one is refused (exit 4),
# malformed and oversized requests get errors and the server keeps serving.
source "$(dirname "$0")/lib.sh"
need python3 curl
start_http_server "$TEST_TMP/server"
src="$TEST_TMP/src"; make_every_kind "$src"

expect_exit 4 mirage-restore --server "$SERVER_URL" snapshots --device dev-http --output json
expect_contains "$ERR" "token"
expect_exit 4 mirage-centralize --server "$SERVER_URL" --token wrong --root "$src" --device-id dev-http --output json
expect_contains "$ERR" '"code":"permission"'
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-http --output json
mirage-centralize accept dev-http >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev-http --output json
mirage-restore --device dev-http --path / --to "$TEST_TMP/back" >/dev/null
expect_same_tree "$src" "$TEST_TMP/back"

# Malformed requests over HTTP: each gets an error reply, never a crash.
rpc() { curl -s -o "$TEST_TMP/reply" -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" --data-binary "$1" "$SERVER_URL/v1/rpc"; }
[ "$(rpc 'not json')" = 400 ] || fail "garbage body not refused"
expect_contains "$(cat "$TEST_TMP/reply")" '"code":"usage"'
[ "$(rpc $'{"v":1,"method":"chunks.put","params":{"device_id":"dev-http"},"binary":3}\nabc')" = 422 ] || fail "short chunk record not refused"
expect_contains "$(cat "$TEST_TMP/reply")" 'truncated'
[ "$(rpc $'{"v":7,"id":1,"method":"server.info"}\n')" = 409 ] || fail "old protocol version not refused"
expect_contains "$(cat "$TEST_TMP/reply")" 'protocol version'
[ "$(rpc $'{"v":1,"method":"no.such"}\n')" = 400 ] || fail "unknown method not refused"
[ "$(rpc $'{"v":1,"method":"snapshot.commit","params":{"device_id":"dev-http","tree":"zz","root":"00"}}\n')" = 400 ] || fail "bad tree id not refused"
[ "$(rpc $'{"v":1,"method":"chunks.missing","binary":5}\n12345')" = 400 ] || fail "bad id list not refused"
# A forged chunk id is refused.
python3 - "$TEST_TMP/forged" <<'PY'
import hashlib, json, struct, sys
data = b"innocent data"
rec = hashlib.sha256(b"another chunk").digest() + bytes([0]) + struct.pack("<II", len(data), len(data)) + data
hdr = json.dumps({"v": 1, "id": 1, "method": "chunks.put", "params": {"device_id": "dev-http"}, "binary": len(rec)})
open(sys.argv[1], "wb").write(hdr.encode() + b"\n" + rec)
PY
code=$(curl -s -o "$TEST_TMP/reply" -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" --data-binary @"$TEST_TMP/forged" "$SERVER_URL/v1/rpc")
[ "$code" = 422 ] || fail "forged chunk not refused ($code)"
expect_contains "$(cat "$TEST_TMP/reply")" 'forged'
kill -0 $SERVER_PID || fail "server died"
expect_exit 0 mirage check --read-data --output json
expect_contains "$OUT" '"ok":true'
echo ok

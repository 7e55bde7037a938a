#!/usr/bin/env bash
# The layer flow over HTTP: capture, assign, the endpoint's apply fetching trees,
# whole chunks and deltas (a file changed in a few bytes) from the server.
source "$(dirname "$0")/lib.sh"
need python3
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
v1=$TEST_TMP/v1; v2=$TEST_TMP/v2
mkdir -p "$v1/usr/lib" "$v1/etc"
head -c 400000 /dev/urandom >"$v1/usr/lib/libbig.so"
printf 'conf\n' >"$v1/etc/x.conf"
cp -a "$v1" "$v2"
printf 'PATCHED' | dd of="$v2/usr/lib/libbig.so" bs=1 seek=200000 conv=notrunc status=none
head -c 50000 /dev/urandom >"$v2/usr/lib/libnew.so"
mirage-capture base --root "$v1" --name b --output json >/dev/null
mirage-capture base --root "$v2" --name b --output json >/dev/null
ep=$TEST_TMP/ep; cp -a "$v1" "$ep"
centralize_accepted "$ep" ep-http >/dev/null
mirage-assign --device ep-http --base b@1 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep-http --output json >/dev/null
mirage-assign --device ep-http --base b@2 --output json >/dev/null
expect_exit 0 mirage-centralize --root "$ep" --device-id ep-http --output json
echo "$OUT" >"$TEST_TMP/apply.json"
cmp "$ep/usr/lib/libbig.so" "$v2/usr/lib/libbig.so" || fail "patched file differs after the apply"
cmp "$ep/usr/lib/libnew.so" "$v2/usr/lib/libnew.so" || fail "new file differs after the apply"
read -r delta wire <<<"$(python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))["order"]
print(o["apply"]["bytes_delta"], o["wire_bytes"])' "$TEST_TMP/apply.json")"
[ "$delta" -gt 0 ] && [ "$delta" -lt 20000 ] || fail "the patched chunk did not come as a small delta ($delta bytes)"
[ "$wire" -lt 150000 ] || fail "update moved $wire bytes for ~50 KB of change"
# The snapshot after the apply knows the written files' chunks: it reads none of them.
read_after=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["files_read"])' "$TEST_TMP/apply.json")
[ "$read_after" = 0 ] || fail "the snapshot after the apply read $read_after files again"
echo ok

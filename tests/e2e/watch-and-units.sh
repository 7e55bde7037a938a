#!/usr/bin/env bash
# mirage-centralize --watch: a sync at once, then on its interval, and at once when an
# order is queued (a snapshot request and a layer order are both carried out within
# seconds though the interval is an hour); SIGTERM stops it cleanly. `cmake --install`
# installs both systemd units, which systemd-analyze accepts, and /metrics of a server
# counts the requests it served.
source "$(dirname "$0")/lib.sh"
need python3 curl
src="$TEST_TMP/src"
mkdir -p "$src/etc" "$src/home/u"
echo one >"$src/etc/app.conf"; echo mine >"$src/home/u/notes"
centralize_accepted "$src" dev-w >/dev/null
mirage-centralize --root "$src" --device-id dev-w --watch --interval 1h --poll 0.2s --output json \
  >"$TEST_TMP/watch.log" 2>"$TEST_TMP/watch.err" &
watcher=$!
wait_lines() {  # wait_lines N: until the watcher printed N sync lines (at most 30 s)
  for _ in $(seq 1 150); do
    [ "$(wc -l <"$TEST_TMP/watch.log")" -ge "$1" ] && return 0
    kill -0 $watcher 2>/dev/null || fail "the watcher died: $(cat "$TEST_TMP/watch.err")"
    sleep 0.2
  done
  fail "the watcher printed $(wc -l <"$TEST_TMP/watch.log") lines, expected $1: $(cat "$TEST_TMP/watch.err")"
}
wait_lines 1
expect_contains "$(head -1 "$TEST_TMP/watch.log")" '"state":"accepted"'
# A snapshot on request: carried out at once (the interval is an hour).
start=$(date +%s)
expect_exit 0 mirage-centralize request --device dev-w --reason "before upgrade" --wait --timeout 30 --output json
expect_contains "$OUT" '"state":"done"'
expect_contains "$OUT" '"snapshot_id"'
[ $(( $(date +%s) - start )) -lt 20 ] || fail "the requested snapshot took too long"
wait_lines 2
expect_exit 0 mirage-restore snapshots --device dev-w --output json
python3 -c 'import json,sys; s=json.loads(sys.argv[1])["snapshots"]; assert sum(x["pinned"] for x in s) == 1 and "pinned" in s[-1]["kept_by"], s' "$OUT" ||
  fail "the requested snapshot is not pinned: $OUT"
# A layer order: applied at once too.
mkdir -p "$TEST_TMP/base/etc"
echo from-layer >"$TEST_TMP/base/etc/layer.conf"
mirage-capture base --root "$TEST_TMP/base" --name wbase --output json >/dev/null
expect_exit 0 mirage-assign --device dev-w --base wbase --wait --timeout 30 --output json
[ "$(cat "$src/etc/layer.conf")" = from-layer ] || fail "the order was not carried out"
wait_lines 3
kill -TERM $watcher
for _ in $(seq 1 50); do kill -0 $watcher 2>/dev/null || break; sleep 0.1; done
kill -0 $watcher 2>/dev/null && fail "the watcher ignored SIGTERM"
wait $watcher || fail "the watcher exited $? on SIGTERM"
lines=$(wc -l <"$TEST_TMP/watch.log")
[ "$lines" -ge 3 ] && [ "$lines" -le 5 ] || fail "expected 3 to 5 syncs, got $lines: $(cat "$TEST_TMP/watch.log")"
expect_exit 2 mirage-centralize --interval 5m
# Install: binaries, man pages, completions and both units with the prefix's paths.
cmake --install "$MIRAGE_BIN" --prefix "$TEST_TMP/inst" >/dev/null
for f in bin/mirage-centralize bin/mirage-serverd share/man/man1/mirage.1 share/bash-completion/completions/mirage \
  lib/systemd/system/mirage-serverd.service lib/systemd/system/mirage-centralize.service; do
  [ -e "$TEST_TMP/inst/$f" ] || fail "cmake --install did not install $f"
done
grep -q -- 'mirage-centralize --watch' "$TEST_TMP/inst/lib/systemd/system/mirage-centralize.service" || fail "endpoint unit does not watch"
if command -v systemd-analyze >/dev/null; then
  bindir=$(sed -n 's|^ExecStart=\(.*\)/mirage-serverd .*|\1|p' "$TEST_TMP/inst/lib/systemd/system/mirage-serverd.service")
  for unit in mirage-serverd mirage-centralize; do
    sed "s|$bindir|$TEST_TMP/inst/bin|" "$TEST_TMP/inst/lib/systemd/system/$unit.service" >"$TEST_TMP/$unit.service"
    systemd-analyze verify --man=no "$TEST_TMP/$unit.service" || fail "systemd-analyze rejects $unit.service"
  done
fi
# /metrics of an HTTP server.
start_http_server "$TEST_TMP/server"
MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN" mirage device list --output json >/dev/null
metrics=$(curl -sf "$SERVER_URL/metrics") || fail "no /metrics"
expect_contains "$metrics" 'mirage_requests_total{method="device.list",outcome="ok"} 1'
expect_contains "$metrics" 'mirage_request_duration_seconds_bucket{method="device.list",le="+Inf"} 1'
expect_contains "$metrics" 'mirage_devices{state="accepted"} 0'
expect_contains "$metrics" 'process_resident_memory_bytes '
echo ok

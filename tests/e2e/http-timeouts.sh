#!/usr/bin/env bash
# Against a server that accepts connections and never answers, a client gives up after
# its idle timeout (MIRAGE_IDLE_TIMEOUT, plain HTTP) or its connect timeout
# (MIRAGE_CONNECT_TIMEOUT, the TLS handshake) with exit 75, and --watch keeps retrying
# instead of hanging. A malformed timeout is a usage error (2).
source "$(dirname "$0")/lib.sh"
need python3 timeout
python3 - "$TEST_TMP/port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
s.settimeout(60)
held = []
end = time.time() + 60
while time.time() < end:          # accepts, reads nothing back, never answers
    try:
        c, _ = s.accept(); held.append(c)
    except OSError:
        break
PY
silent=$!
trap 'kill $silent 2>/dev/null || true; wait 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 50); do [ -s "$TEST_TMP/port" ] && break; sleep 0.1; done
url="127.0.0.1:$(cat "$TEST_TMP/port")"
src=$TEST_TMP/src; mkdir -p "$src/etc"; echo x >"$src/etc/f"

expect_exit 75 env MIRAGE_IDLE_TIMEOUT=1 timeout 30 mirage-centralize --server "http://$url" --token t \
  --root "$src" --device-id dev-t --output json
expect_contains "$ERR" "idle timeout 1 s"
expect_exit 75 env MIRAGE_IDLE_TIMEOUT=1 timeout 30 mirage-centralize --server "http://$url" --token t devices --output json
expect_exit 75 env MIRAGE_CONNECT_TIMEOUT=1 timeout 30 mirage-centralize --server "https://$url" --token t \
  --root "$src" --device-id dev-t --output json
expect_contains "$ERR" "connect timeout 1000 ms"
expect_exit 2 env MIRAGE_IDLE_TIMEOUT=soon mirage-centralize --server "http://$url" --token t devices
expect_contains "$ERR" "MIRAGE_IDLE_TIMEOUT"
expect_exit 2 env MIRAGE_CONNECT_TIMEOUT=0 mirage-centralize --server "http://$url" --token t devices

# --watch: each sync times out, is logged and retried; the watcher stays up.
MIRAGE_IDLE_TIMEOUT=1 mirage-centralize --server "http://$url" --token t --root "$src" --device-id dev-t \
  --watch --interval 1h --poll 0.2s --output json >/dev/null 2>"$TEST_TMP/watch.err" &
watcher=$!
for _ in $(seq 1 100); do grep -q "sync failed" "$TEST_TMP/watch.err" && break; sleep 0.1; done
expect_contains "$(cat "$TEST_TMP/watch.err")" "sync failed"
kill -0 $watcher 2>/dev/null || fail "the watcher died on a timeout: $(cat "$TEST_TMP/watch.err")"
kill -TERM $watcher
for _ in $(seq 1 50); do kill -0 $watcher 2>/dev/null || break; sleep 0.1; done
kill -0 $watcher 2>/dev/null && fail "the watcher ignored SIGTERM"
wait $watcher || fail "the watcher exited $? on SIGTERM"
echo ok

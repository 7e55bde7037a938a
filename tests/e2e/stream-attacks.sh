#!/usr/bin/env bash
# A streaming restore to a directory, attacked as a user or an outage would, over HTTP:
# 1. A program maps a placeholder (mmap) and reads 4 KiB far into it during a throttled
#    fill: it gets the right bytes.
# 2. The server goes away in the middle of the fill: the restore ends with an error that
#    says so, and every file not filled is still a placeholder (none looks complete).
# 3. The server is back (same data, same port): the same command finishes the tree, equal
#    to the source.
source "$(dirname "$0")/lib.sh"
need_root
need python3 timeout
T=$TEST_TMP
start_http_server "$T/server"
export MIRAGE_SERVER="$SERVER_URL"

src=$T/src
mkdir -p "$src/etc" "$src/home/u" "$src/opt"
echo host >"$src/etc/hostname"
head -c 16M /dev/urandom >"$src/home/u/big.bin"
for i in 1 2 3; do head -c 300K /dev/urandom >"$src/opt/f$i"; done
expect_exit 5 mirage-centralize --root "$src" --device-id dev-a --state "$T/state" --output json
admin mirage-centralize accept dev-a >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev-a --state "$T/state" --output json

status_file=$MIRAGE_HOME/restore/dev-a.json
back=$T/back
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore --device dev-a --path / --to "$back" --stream --bwlimit 128K --output json \
  >"$T/r.out" 2>"$T/r.err" &
pid=$!
wait_stream_filling "$status_file" $pid "$T/r.err"

# 1. mmap, 4 KiB at 12 MB (the throttled fill is at its start).
timeout 60 python3 - "$back/home/u/big.bin" "$src/home/u/big.bin" <<'PY' || fail "a mapped placeholder read the wrong bytes"
import mmap, sys
at = 12 << 20
with open(sys.argv[2], "rb") as f:
    f.seek(at)
    want = f.read(4096)
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    got = m[at:at + 4096]
    m.close()
sys.exit(0 if got == want else 1)
PY

# 2. The server goes away mid-fill.
port=${SERVER_URL##*:}
stop_server
if ! timeout 300 tail --pid=$pid -f /dev/null; then
  kill -9 $pid 2>/dev/null || true
  fail "the restore did not end within 300 s of its server going away"
fi
set +e
wait $pid
rc=$?
set -e
[ "$rc" = 75 ] || fail "the restore with its server gone: expected exit 75 (unavailable), got $rc: $(cat "$T/r.err")"
grep -q '"code":"unavailable"' "$T/r.err" || fail "the error does not say the server is unavailable: $(cat "$T/r.err")"
echo "restore with its server gone: exit $rc: $(tail -2 "$T/r.err")" >&2
left=0
for f in "$back/home/u/big.bin" "$back/opt/f1" "$back/opt/f2" "$back/opt/f3"; do
  rel=${f#"$back"}
  if ! cmp -s "$src$rel" "$f"; then
    is_placeholder "$f" || fail "$rel is neither complete nor a placeholder after the fill broke off"
    left=$((left + 1))
  fi
done
[ "$left" -gt 0 ] || fail "every file was filled before the server went away: nothing tested"

# 3. Back on the same port.
mirage-serverd --data "$T/server" --listen "127.0.0.1:$port" 2>"$TEST_TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
  grep -q serving "$TEST_TMP/server.log" 2>/dev/null && break
  kill -0 $SERVER_PID 2>/dev/null || fail "the server did not start again: $(cat "$TEST_TMP/server.log")"
  sleep 0.1
done
expect_exit 0 admin mirage-restore --device dev-a --path / --to "$back" --stream --output json
expect_same_tree "$src" "$back"
echo "stream-attacks: ok"

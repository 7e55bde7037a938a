#!/usr/bin/env bash
# A centralize whose server is killed with -9 in the middle of a first upload exits
# within 30 s with exit 75 (server unavailable), never hangs: over the local transport
# run by a server program (MIRAGE_SERVERD: its mirage-serverd --stdio processes killed)
# at several points of the upload, and over HTTP. (The commands' own in-process store
# dies with them: crash-kill9-centralize.) A worker's put runs in the background; its failure must stop the whole
# upload (the walk, the other workers, the trees), not wait for a worker's next batch.
source "$(dirname "$0")/lib.sh"
need python3 timeout pgrep
# stored_bytes: what the data directory holds (grows as packs are written).
stored_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }
# make_tree DIR: 96 MB of incompressible data in 24 files, new to the server: enough
# upload left after the kill's threshold that it lands in the middle of it.
make_tree() {
  mkdir -p "$1"
  for i in $(seq 1 24); do head -c 4000000 /dev/urandom >"$1/f$i"; done
}
# run_and_kill GROWTH CMD...: starts CMD (a centralize), waits (at most 60 s) until the
# data directory has grown by GROWTH bytes, then runs $KILL; CMD must end within 30 s
# after. Sets RC (124 when it did not end).
run_and_kill() {
  local growth=$1; shift
  local base; base=$(stored_bytes "$DATA")
  "$@" >"$TEST_TMP/run.out" 2>"$TEST_TMP/run.err" &
  PID=$!
  for _ in $(seq 1 1200); do
    kill -0 $PID 2>/dev/null || break
    [ $(( $(stored_bytes "$DATA") - base )) -ge "$growth" ] && break
    sleep 0.05
  done
  kill -0 $PID 2>/dev/null || fail "the upload ended before the kill (growth $growth): $(tail -c 300 "$TEST_TMP/run.err")"
  $KILL
  local i
  for i in $(seq 1 300); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
  if kill -0 $PID 2>/dev/null; then
    echo "centralize still runs 30 s after its server was killed; its threads:" >&2
    if command -v gdb >/dev/null; then
      timeout 60 gdb -p $PID -batch -ex "thread apply all bt 16" 2>/dev/null | grep -E "^Thread|^#" | head -150 >&2 || true
    fi
    kill -9 $PID
    wait $PID 2>/dev/null || true
    fail "centralize did not exit within 30 s of the kill (growth $growth)"
  fi
  set +e; wait $PID; RC=$?; set -e
}
# Only mirage-serverd: an exiting client under LeakSanitizer has its leak check's tracer as a
# child too, and killing that one would hang the client (not what this test is about).
kill_stdio_servers() { local kids; kids=$(pgrep -P $PID -x mirage-serverd) && kill -9 $kids || true; }

# Local transport run by a server program: the servers are the client's children.
DATA=$MIRAGE_HOME KILL=kill_stdio_servers
export MIRAGE_SERVERD; MIRAGE_SERVERD=$(command -v mirage-serverd)
mkdir -p "$TEST_TMP/empty"
expect_exit 5 mirage-centralize --root "$TEST_TMP/empty" --device-id dev-k --output json
mirage-centralize accept dev-k >/dev/null
for growth in 1 4000000 12000000; do
  make_tree "$TEST_TMP/src-$growth"
  run_and_kill "$growth" mirage-centralize --root "$TEST_TMP/src-$growth" --device-id dev-k --threads 2 --output json
  [ "$RC" = 75 ] || fail "exit $RC after the local server was killed (75 expected): $(tail -c 400 "$TEST_TMP/run.err")"
  expect_contains "$(cat "$TEST_TMP/run.err")" "exited"
done
expect_exit 0 mirage check --read-data --output json

unset MIRAGE_SERVERD

# HTTP: the server itself.
start_http_server "$TEST_TMP/server"
DATA=$TEST_TMP/server KILL="kill -9 $SERVER_PID"
export MIRAGE_SERVER=$SERVER_URL MIRAGE_TOKEN=$ADMIN_TOKEN
expect_exit 5 mirage-centralize --root "$TEST_TMP/empty" --device-id dev-h --output json
mirage-centralize accept dev-h >/dev/null
make_tree "$TEST_TMP/src-http"
run_and_kill 1 mirage-centralize --root "$TEST_TMP/src-http" --device-id dev-h --threads 2 --output json
wait $SERVER_PID 2>/dev/null || true
SERVER_PID=
[ "$RC" = 75 ] || fail "exit $RC after the HTTP server was killed (75 expected): $(tail -c 400 "$TEST_TMP/run.err")"
echo ok

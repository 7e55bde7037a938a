#!/usr/bin/env bash
# A server that answers every request 503 with Retry-After (a hostile or stuck one)
# cannot keep a client looping: it sends the request again for at most the idle
# timeout in all, then gives up unavailable (exit 75). A Retry-After longer than the
# idle timeout is not waited for at all; one of 0 or a date in the past is no retry.
source "$(dirname "$0")/lib.sh"
need python3
serve() {  # serve RETRY-AFTER: a fake server on a free loopback port; sets FAKE_URL, FAKE_PID
  FAKE_N=$((${FAKE_N:-0} + 1))  # a log of its own: the last one's port is never read
  local log="$TEST_TMP/fake.$FAKE_N.log"
  python3 - "$1" "$TEST_TMP/posts" >"$log" 2>&1 <<'PY' &
import http.server, sys
retry, log = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "a") as f:
            f.write("post\n")
        body = b'{"id":1,"error":{"code":"unavailable","message":"busy"}}\n'
        self.send_response(503)
        self.send_header("Retry-After", retry)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
  FAKE_PID=$!
  for _ in $(seq 1 50); do [ -s "$log" ] && break; sleep 0.1; done
  [ -s "$log" ] || fail "the fake server did not start"
  FAKE_URL="http://127.0.0.1:$(head -1 "$log")"
  trap 'kill $FAKE_PID 2>/dev/null || true; cleanup' EXIT
}
posts() { if [ -e "$TEST_TMP/posts" ]; then wc -l <"$TEST_TMP/posts"; else echo 0; fi; }

for case in "1 3" "100000 3" "0 3" "Wed, 21 Oct 2015 07:28:00 GMT 3"; do
  retry=${case% *}; idle=${case##* }
  rm -f "$TEST_TMP/posts"
  serve "$retry"
  expect_exit 75 timeout 60 env MIRAGE_IDLE_TIMEOUT="$idle" mirage-restore snapshots --device d --server "$FAKE_URL" --token t
  n=$(posts)
  case $retry in
    1) [ "$n" -ge 2 ] && [ "$n" -le $((idle + 1)) ] || fail "Retry-After 1, idle $idle: $n requests" ;;
    *) [ "$n" = 1 ] || fail "Retry-After '$retry': $n requests (expected no retry)" ;;
  esac
  kill "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true
done
echo ok

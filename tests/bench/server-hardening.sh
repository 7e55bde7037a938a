#!/usr/bin/env bash
# Measures what issue 10 names: the server's peak memory under the attack suite, and
# the latency of another caller's request while the slowest legal request runs.
#   tests/bench/server-hardening.sh            (BENCH_MB: store size for the slow request, default 400)
# Prints a table; never fails on a number (benchmarks are not timed tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
export MIRAGE_BIN=${MIRAGE_BIN:-$PWD/build} MIRAGE_SOURCE=$PWD
source tests/e2e/lib.sh
mb=${BENCH_MB:-400}
attack() { python3 tests/e2e/attack.py "$SERVER_URL" "$@"; }
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$SERVER_PID/status"; }
hwm() { awk '/^VmHWM/ {print int($2/1024)}' "/proc/$SERVER_PID/status"; }
echo "idle server: $(rss) MiB" >&2
for a in nesting fields bodies metrics auth; do attack "$a" "$ADMIN_TOKEN" >/dev/null; done
attack slowloris 200 20 >/dev/null
after_attacks=$(hwm)
# 32 parallel 60 MiB uploads from an admin: the body budget (256 MiB) holds them back.
python3 - "$SERVER_URL" "$ADMIN_TOKEN" <<'PY'
import http.client, json, sys, threading, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); tok = sys.argv[2]
body = json.dumps({"v": 1, "id": 1, "method": "chunks.put", "params": {}, "binary": 60 << 20}).encode() + b"\n" + b"\0" * (60 << 20)
codes = []
def one():
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    c.request("POST", "/v1/rpc", body=body, headers={"Authorization": "Bearer " + tok, "X-Mirage-Method": "chunks.put"})
    codes.append(c.getresponse().status); c.close()
ts = [threading.Thread(target=one) for _ in range(32)]
[t.start() for t in ts]; [t.join() for t in ts]
print("32 x 60 MiB uploads answered:", sorted(set(codes)), file=sys.stderr)
PY
after_uploads=$(hwm)
src="$TEST_TMP/src"; mkdir -p "$src"
for i in $(seq 1 $((mb / 25))); do head -c 25000000 /dev/urandom >"$src/big$i.bin"; done
centralize_accepted "$src" bulky >/dev/null
parallel=$(attack parallel "$ADMIN_TOKEN" bulky 10)
peak=$(hwm)
printf '%s\n' "| measure | value |" "|---|---|" \
  "| server peak memory after the attack suite (nesting, fields, bodies, metrics, auth, 200 slow clients) | ${after_attacks} MiB |" \
  "| server peak memory after 32 parallel 60 MiB uploads (budget 256 MiB) | ${after_uploads} MiB |" \
  "| server peak memory at the end (${mb} MB store, check --read-data loops) | ${peak} MiB |" \
  "| server.info beside a whole-store check --read-data | $(echo "$parallel" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%d calls: median %.1f ms, p90 %.1f ms, worst %.1f ms; each check up to %.2f s" % (r["server_info_calls"],
      1000 * r["server_info_median_seconds"], 1000 * r["server_info_p90_seconds"], 1000 * r["server_info_worst_seconds"],
      r["slow_request_seconds"]))') |"

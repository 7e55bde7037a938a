#!/usr/bin/env bash
# The fleet bench runs whole on a handful of endpoints (a benchmark is never timed here):
# tests/bench/fleet-loadgen.sh starts a server over HTTPS, mirage-loadgen registers each
# endpoint on its own credential, the admin accepts them, and every round syncs them all.
# Checked: one JSON line per round with every endpoint's sync done, the server's
# handler-wait histogram found in /metrics (a p99 bound, not -1), the server's CPU read,
# and the load generator run at the nice value asked (the bench's default is 19).
source "$(dirname "$0")/lib.sh"
need python3 curl openssl
[ -x "$MIRAGE_BIN/mirage-loadgen" ] || skip "mirage-loadgen not built"
out=$(BENCH_ENDPOINTS=6 BENCH_FILES=5 BENCH_ROUNDS=1 BENCH_LOADGEN_NICE=7 BENCH_DIR="$TEST_TMP/bench" \
  bash "$MIRAGE_SOURCE/tests/bench/fleet-loadgen.sh" "$MIRAGE_BIN" 2>"$TEST_TMP/bench.err") ||
  fail "the bench failed: $(cat "$TEST_TMP/bench.err")"
python3 - "$out" <<'PY' || fail "bench output: $out"
import json, sys
rounds = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
assert [r["round"] for r in rounds] == [0, 1], rounds
for r in rounds:
    assert r["syncs"] == 6 and r["endpoints_at_once"] == 6, r
    assert 0 < r["handler_wait_p99_le_seconds"] <= 1e9, r
    assert r["server_cpu_seconds"] >= 0, r
    assert r["sync_p50_seconds"] <= r["sync_p99_seconds"], r
    assert r["client_nice"] == 7, r
assert sum(r["server_cpu_seconds"] for r in rounds) > 0, rounds  # read in 10 ms ticks
assert rounds[0]["kind"] == "first sync" and "changed" in rounds[1]["kind"], rounds
PY
echo ok

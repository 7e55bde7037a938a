#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): one mirage-serverd on this machine
# against a simulated fleet, over HTTPS on loopback, with GC running the whole time.
#   tests/bench/fleet-load.sh [BUILD_DIR]
# BENCH_ENDPOINTS (100), BENCH_FILES per endpoint (200, 1-8 KiB each), BENCH_DIR.
# Retention keeps each endpoint's last two snapshots, so every sync makes garbage, and
# `mirage gc --grace 0s` runs in a loop the whole time. Rounds: 1 the first sync of every
# endpoint, all at once; 2 and 3 every endpoint syncs again with 1% of its files changed
# (changes made between rounds; only syncs are timed); 4 the same, and the server is
# killed with SIGKILL a quarter of a round's time in and restarted: every endpoint retries
# (as its systemd unit would) until its sync completes. Then `mirage check --read-data`,
# and every tenth endpoint's latest snapshot restored and compared with its tree by the
# independent listing. Reports server request latency p50/p99 (from its /metrics
# histograms), server peak memory and CPU, sync times, and how many endpoints the server
# sustains at one sync per hour, against VMware Mirage's sizing of 1,500 endpoints per
# 8-vCPU server node (375 per 2 cores). BENCH_KEEP=1 keeps the data and logs.
# Bounded: every sync has a 300 s timeout and at most 30 attempts; GC at most 500 runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
N=${BENCH_ENDPOINTS:-100}
FILES=${BENCH_FILES:-200}
B=${BENCH_DIR:-/var/tmp/mirage-fleet-bench}
rm -rf "$B"; mkdir -p "$B"/{pki,ep,state,log}
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$B"; }
trap cleanup EXIT
unset MIRAGE_SERVER MIRAGE_TOKEN
export MIRAGE_HOME="$B/client-home"

# ---- TLS and the server ---------------------------------------------------
pki=$B/pki
source "$here/../pki.sh"
make_pki "$pki"
token=$(mirage-serverd init --data "$B/server" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')
port=$(( 20000 + RANDOM % 20000 ))
start_server() {
  mirage-serverd --data "$B/server" --listen "127.0.0.1:$port" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" \
    --gc-interval 0 2>>"$B/log/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf --cacert "$pki/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "server did not start: $(tail -5 "$B/log/server.log")" >&2; exit 1
}
start_server
url="https://127.0.0.1:$port"
admin=(--server "$url" --token "$token" --ca-file "$pki/ca.pem")

# ---- the fleet ------------------------------------------------------------
echo "making $N endpoints of $FILES files" >&2
mkdir -p "$B/template/etc" "$B/template/usr/share/doc"
python3 - "$B/template" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
for i in range(n):
    d = os.path.join(root, "usr/share/doc" if i % 3 else "etc")
    with open(os.path.join(d, f"f{i:04d}"), "wb") as f: f.write(rnd.randbytes(rnd.randint(1024, 8192)))
PY
for i in $(seq 1 "$N"); do
  cp -a "$B/template" "$B/ep/$i"
  mkdir -p "$B/ep/$i/home/user"
  head -c 20000 /dev/urandom >"$B/ep/$i/home/user/own"   # every endpoint has data of its own
done
# sync I LABEL: one endpoint's sync, retried until it completes (as systemd would restart it).
sync_one() {
  local i=$1 label=$2 attempt rc start end
  for attempt in $(seq 1 30); do
    start=$(date +%s.%N)
    set +e
    timeout 300 mirage-centralize --server "$url" --ca-file "$pki/ca.pem" --root "$B/ep/$i" --device-id "ep$i" \
      --state "$B/state/$i" --threads 1 --output json >"$B/log/$label-$i.out" 2>"$B/log/$label-$i.err"
    rc=$?
    set -e
    end=$(date +%s.%N)
    if [ $rc = 0 ] || { [ "$label" = register ] && [ $rc = 5 ]; }; then
      echo "$i $attempt $(echo "$end - $start" | bc)" >>"$B/log/$label.times"
      return 0
    fi
    echo "ep$i attempt $attempt exit $rc: $(tail -1 "$B/log/$label-$i.err")" >>"$B/log/$label.retries"
    sleep 1
  done
  echo "ep$i: $label failed 30 times: $(tail -2 "$B/log/$label-$i.err")" >>"$B/log/failures"
}
change_all() {  # change_all ROUND: 1% of every endpoint's files get new content (new inodes)
  python3 - "$B/ep" "$N" "$1" <<'PY'
import os, random, sys
ep, n, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    root = os.path.join(ep, str(i))
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    rnd = random.Random(f"{i}:{r}")
    for p in rnd.sample(files, max(1, len(files) // 100)):
        with open(p + ".new", "wb") as f: f.write(os.urandom(rnd.randint(1024, 8192)))
        os.replace(p + ".new", p)
PY
}
# `wait` alone would also wait for the server: every wait names its jobs.
wait_all() { local p; for p in "$@"; do wait "$p" || true; done; }
round() {  # round LABEL: every endpoint syncs at once
  local label=$1 i pids=()
  for i in $(seq 1 "$N"); do sync_one "$i" "$label" & pids+=($!); done
  wait_all "${pids[@]}"
}
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, clock ticks
hz=$(getconf CLK_TCK)

echo "registering and accepting" >&2
round register
# Retention keeps each endpoint's last two snapshots, so every sync makes garbage for GC.
echo '{"retention": {"last": 2, "hourly": 0, "daily": 0, "weekly": 0, "monthly": 0}}' >"$B/policy.json"
mirage policy set fleet --file "$B/policy.json" "${admin[@]}" >/dev/null
for i in $(seq 1 "$N"); do mirage-centralize "${admin[@]}" accept "ep$i" --policy fleet >/dev/null; done

# GC in a loop for the whole load, with no grace period and eager repacking: only the
# server's pins on uploads in flight keep their chunks alive.
touch "$B/gc-on"
(n=0; while [ -e "$B/gc-on" ] && [ $n -lt 500 ]; do
   n=$((n + 1))
   mirage gc "${admin[@]}" --grace 0s --repack-below 0.8 --output json >>"$B/log/gc.log" 2>>"$B/log/gc.err" ||
     echo "gc run $n failed" >>"$B/log/gc-failures"
   sleep 0.5
 done) &
gc_loop=$!

echo "round 1: first sync of $N endpoints" >&2
t0=$(date +%s.%N); round r1; t1=$(date +%s.%N)
echo "rounds 2-3: 1% changed, all at once" >&2
# Only the syncs are timed; the changes are made between rounds.
cpu0=$(cpu_of "$server_pid")
change_all 2; t=$(date +%s.%N); round r2; rounds_s=$(echo "$(date +%s.%N) - $t" | bc)
change_all 3; t=$(date +%s.%N); round r3; rounds_s=$(echo "$rounds_s + $(date +%s.%N) - $t" | bc)
cpu1=$(cpu_of "$server_pid")
curl -sf --cacert "$pki/ca.pem" "$url/metrics" >"$B/metrics.txt"
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")

echo "round 4: kill -9 of the server mid-load, restart, every endpoint retries" >&2
# The kill lands halfway through the time a round took before.
kill_after=$(echo "scale=2; $rounds_s / 4" | bc)
change_all 4
t4=$(date +%s.%N)
round r4 &
round_pid=$!
sleep "$kill_after"
done_before_kill=0; [ -e "$B/log/r4.times" ] && done_before_kill=$(wc -l <"$B/log/r4.times")
in_flight=$(( N - done_before_kill ))
kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
sleep 2
start_server
wait "$round_pid"
t5=$(date +%s.%N)
rm -f "$B/gc-on"; wait "$gc_loop"

echo "checking the store" >&2
check_rc=0
mirage check "${admin[@]}" --read-data --output json >"$B/check.json" || check_rc=$?
# Every tenth endpoint's latest snapshot, restored and compared with its tree.
restored=0; differ=0
for i in $(seq 1 10 "$N"); do
  if mirage-restore "${admin[@]}" --device "ep$i" --path / --to "$B/restore/$i" --output json >/dev/null 2>>"$B/log/restore.err" &&
     cmp -s <(python3 "$here/../e2e/listing.py" "$B/ep/$i") <(python3 "$here/../e2e/listing.py" "$B/restore/$i"); then :
  else differ=$((differ + 1)); fi
  restored=$((restored + 1))
done
echo "$restored restored, $differ differ" >"$B/log/restore-check"

python3 - "$B" "$N" "$t0" "$t1" "$rounds_s" "$t4" "$t5" "$cpu0" "$cpu1" "$hz" "$peak_kib" "$check_rc" "$in_flight" <<'PY'
import json, os, re, sys
B, N = sys.argv[1], int(sys.argv[2])
t0, t1, rounds_s, t4, t5, cpu0, cpu1, hz = map(float, sys.argv[3:11])
peak_kib, check_rc, in_flight = int(sys.argv[11]), int(sys.argv[12]), int(sys.argv[13])
def read(name):
    p = os.path.join(B, "log", name)
    return open(p).read() if os.path.exists(p) else ""
def times(label):
    p = os.path.join(B, "log", label + ".times")
    return [tuple(map(float, l.split())) for l in open(p)] if os.path.exists(p) else []
def q(xs, f):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(f * len(xs)))] if xs else float("nan")
# Server latency from the /metrics histograms (linear inside a bucket): the endpoints'
# requests together, and the slowest methods on their own. GC's own runs are admin calls.
hist = {}
for line in open(os.path.join(B, "metrics.txt")):
    m = re.match(r'mirage_request_duration_seconds_bucket\{method="([^"]+)",le="([^"]+)"\} (\d+)', line)
    if m:
        le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
        hist.setdefault(m.group(1), {})[le] = int(m.group(3))
def merged(methods):
    out = {}
    for meth in methods:
        for le, c in hist[meth].items(): out[le] = out.get(le, 0) + c
    return out
def hq(buckets, f):
    bounds = sorted(buckets); want, prev_b, prev_c = f * buckets[float("inf")], 0.0, 0
    for b in bounds:
        c = buckets[b]
        if c >= want:
            if b == float("inf"): return prev_b
            return prev_b + (b - prev_b) * ((want - prev_c) / max(1, c - prev_c))
        prev_b, prev_c = b, c
endpoint_methods = [m for m in hist if m != "gc.run"]
sync_hist = merged(endpoint_methods)
count = lambda meth: hist[meth][float("inf")]
busiest = sorted((m for m in endpoint_methods if count(m) >= 50), key=lambda m: -hq(hist[m], .99))[:3]
failures = read("failures")
gc = [json.loads(l) for l in read("gc.log").splitlines() if l.strip()]
gc_deleted = sum(r["deleted"] for r in gc)
gc_repacked = sum(r["repacked"] for r in gc)
gc_errors = [l for l in read("gc.err").splitlines() if l.strip()]
gc_down = sum(1 for l in gc_errors if '"unavailable"' in l)   # while the server was killed
steady = times("r2") + times("r3")
syncs = len(steady)
cpu_s = (cpu1 - cpu0) / hz
cpu_per_sync = cpu_s / max(1, syncs)
# One sync per endpoint per hour, the server's two cores at most half busy.
by_cpu = int(2 * 3600 * 0.5 / cpu_per_sync) if cpu_per_sync > 0 else 0
by_wall = int(syncs / rounds_s * 3600 * 0.5)
r4 = times("r4")
retried = sum(1 for _, a, _ in r4 if a > 1)
check = json.load(open(os.path.join(B, "check.json"))) if check_rc in (0, 6) else {}
rows = [
    ("endpoints", N),
    ("round 1 (first sync, all at once)", f"{t1 - t0:.1f} s"),
    ("rounds 2-3 (1% changed, all at once)", f"{rounds_s:.1f} s for {syncs} syncs"),
    ("sync time p50 / p99 (rounds 2-3)", f"{q([t for _, _, t in steady], .5):.2f} s / {q([t for _, _, t in steady], .99):.2f} s"),
    ("server latency p50 / p99, endpoint requests", f"{hq(sync_hist, .5) * 1000:.1f} ms / {hq(sync_hist, .99) * 1000:.1f} ms "
                                                    f"over {sync_hist[float('inf')]} requests"),
] + [(f"  {m} p50 / p99", f"{hq(hist[m], .5) * 1000:.1f} ms / {hq(hist[m], .99) * 1000:.1f} ms ({count(m)} requests)")
     for m in busiest] + [
    ("  gc.run p50 (admin)", f"{hq(hist['gc.run'], .5) * 1000:.0f} ms ({count('gc.run')} runs)" if "gc.run" in hist else "none"),
    ("server peak memory (VmHWM)", f"{peak_kib / 1024:.0f} MiB"),
    ("server CPU per sync (1% changed)", f"{cpu_per_sync * 1000:.1f} ms"),
    ("server CPU busy during rounds 2-3", f"{cpu_s / rounds_s / 2 * 100:.0f}% of 2 cores"),
    ("GC runs beside the load", f"{len(gc)}: {gc_deleted} chunks deleted, {gc_repacked} packs repacked; "
                                f"{len(gc_errors) - gc_down} failed, {gc_down} refused while the server was down"),
    ("round 4: kill -9 mid-load, syncs completed", f"{len(r4)} of {N} ({in_flight} in flight at the kill, "
                                                   f"{retried} retried), {t5 - t4:.1f} s"),
    ("failed syncs", failures.count("\n")),
    ("mirage check --read-data", "clean" if check_rc == 0 and check.get("ok") else f"FAILED (exit {check_rc})"),
    ("latest snapshots restored and compared", read("restore-check").strip() or "not run"),
    ("endpoints at 1 sync/hour (server half busy)", f"{by_wall} measured (clients share the 2 cores); "
                                                    f"{by_cpu} by server CPU alone"),
    ("VMware Mirage sizing for 2 cores", "375 (1,500 per 8 vCPUs)"),
    ("ratio, measured", f"{by_wall / 375:.1f}x"),
]
w = max(len(a) for a, _ in rows)
for a, b in rows: print(f"{a:<{w}}  {b}")
print(json.dumps({"endpoints": N, "latency_p50_ms": hq(sync_hist, .5) * 1000, "latency_p99_ms": hq(sync_hist, .99) * 1000,
                  "peak_mib": peak_kib / 1024, "cpu_ms_per_sync": cpu_per_sync * 1000, "endpoints_by_cpu": by_cpu,
                  "endpoints_by_wall": by_wall, "kill9_completed": len(r4), "failures": failures.count("\n"),
                  "check_ok": check_rc == 0, "gc_runs": len(gc), "gc_deleted": gc_deleted,
                  "gc_failed": len(gc_errors) - gc_down, "in_flight_at_kill": in_flight, "retried": retried}))
PY

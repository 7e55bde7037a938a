#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): one mirage-serverd over HTTPS on
# loopback against many endpoints simulated in one process (mirage-loadgen: the
# library's own centralize flow, each endpoint on its own device credential), so the
# clients do not hide the server. Reports per round: sync p50/p99, the server's
# handler-wait p99 (complete header to handler, from /metrics), server CPU per sync, and
# the endpoints one server sustains at one sync per hour.
#   tests/bench/fleet-loadgen.sh [BUILD_DIR]
# BENCH_ENDPOINTS (300), BENCH_CONCURRENCY (= endpoints: all at once), BENCH_FILES (50),
# BENCH_ROUNDS (2), BENCH_CHANGE (percent of files changed per round, 2), BENCH_DIR,
# BENCH_SERVER_ARGS (more mirage-serverd flags, e.g. "--max-connections 32"),
# BENCH_LOADGEN_NICE (19): the load generator's nice value. The simulated endpoints are
# 300 machines' worth of scanning, chunking, hashing and compressing on this host's two
# cores; at the server's own priority they take its cores, and a handler thread woken for
# a request waits in the run queue behind ~300 client threads (the first-sync round then
# reads 0.25-1 s of "handler wait" that is the host's scheduler, not the server). At 19
# the server gets the cores it asks for, as it would with its endpoints on other machines;
# BENCH_LOADGEN_NICE=0 measures the shared host.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
N=${BENCH_ENDPOINTS:-300}
C=${BENCH_CONCURRENCY:-$N}
B=${BENCH_DIR:-/var/tmp/mirage-loadgen-bench}
rm -rf "$B"; mkdir -p "$B"/pki
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$B"; }
trap cleanup EXIT
unset MIRAGE_SERVER MIRAGE_TOKEN
source "$here/../pki.sh"
make_pki "$B/pki"
token=$("$build/mirage-serverd" init --data "$B/server" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')
port=$(( 20000 + RANDOM % 20000 ))
# Open files: a connection each, and the clients' own.
ulimit -n 65536 2>/dev/null || true
"$build/mirage-serverd" --data "$B/server" --listen "127.0.0.1:$port" --tls-cert "$B/pki/server.pem" \
  --tls-key "$B/pki/server.key" --gc-interval 0 ${BENCH_SERVER_ARGS:-} 2>"$B/server.log" &
server_pid=$!
for _ in $(seq 1 100); do curl -sf --cacert "$B/pki/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
echo "server: $(ps -o rss= -p "$server_pid") KiB resident at start" >&2
nice -n "${BENCH_LOADGEN_NICE:-19}" "$build/mirage-loadgen" --server "https://127.0.0.1:$port" --ca-file "$B/pki/ca.pem" --token "$token" --dir "$B/fleet" \
  --endpoints "$N" --concurrency "$C" --files "${BENCH_FILES:-50}" --rounds "${BENCH_ROUNDS:-2}" \
  --change "${BENCH_CHANGE:-2}" --server-pid "$server_pid"
echo "server peak memory: $(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status") KiB" >&2

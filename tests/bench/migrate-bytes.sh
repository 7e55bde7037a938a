#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): the OS migration of an endpoint that
# has the bookworm base to the trixie base.
#   tests/bench/migrate-bytes.sh [BUILD_DIR]
# Data: the debootstrap bookworm and trixie minbase roots the tests cache (tests/e2e/lib.sh
# make_debian; debootstrap runs once when a cache is missing). Both captured as base
# layers on a local store (the protocol over a pipe, the bytes the endpoint receives
# counted as on a network); the endpoint is a copy of the bookworm root given bookworm.
# Prints:
#   trixie base     the new base's file bytes (what a full download moves, uncompressed)
#   migration wire  the migration order's bytes received (trees, manifests, chunks not
#                   found on the device; its result's wire_bytes)
#   apply           the apply's bytes fetched whole, as deltas, found on the device
#   rsync           bytes an rsync daemon on 127.0.0.1 sends to make a copy of the
#                   bookworm root into the trixie root (rsync -aHAX --delete, its
#                   "Total bytes sent" by the daemon = received by the client)
#   switch          seconds from the protecting snapshot's end to the end of the apply
#                   (linking /old-root, applying): the endpoint's downtime if the switch
#                   ran offline; and the whole sync's wall time
# BENCH_SMALL=1 runs it on two small synthetic trees instead (a smoke run, seconds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
[ "$(id -u)" = 0 ] || { echo "run as root (a whole root's owners)" >&2; exit 1; }
B=${BENCH_DIR:-/var/tmp/bench-migrate-bytes}
rm -rf "$B"; mkdir -p "$B"
daemon_pid=
trap '[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; rm -rf "$B"' EXIT
export MIRAGE_HOME="$B/mirage"
unset MIRAGE_SERVER MIRAGE_TOKEN

old=$B/bookworm new=$B/trixie ep=$B/ep
if [ -n "${BENCH_SMALL:-}" ]; then
  for r in "$old" "$new"; do mkdir -p "$r/etc" "$r/usr/bin" "$r/var/lib/dpkg"; done
  echo 12.8 >"$old/etc/debian_version"; echo 13.1 >"$new/etc/debian_version"
  head -c 4000000 /dev/urandom >"$old/usr/bin/big"
  cp "$old/usr/bin/big" "$new/usr/bin/big"
  printf 'changed' | dd of="$new/usr/bin/big" bs=1 seek=2000000 conv=notrunc status=none
  head -c 500000 /dev/urandom >"$new/usr/bin/new"
else
  unpack_debian bookworm "$old"
  unpack_debian trixie "$new"
fi
mirage-capture base --root "$old" --name bookworm --output json >/dev/null
mirage-capture base --root "$new" --name trixie --output json >/dev/null
cp -a "$old" "$ep"
sync_ep() { mirage-centralize --root "$ep" --device-id bench --state "$B/state" --output json "$@"; }
sync_ep >/dev/null 2>&1 || true
mirage-centralize accept bench >/dev/null
mirage-assign --device bench --base bookworm@1 --output json >/dev/null
sync_ep >/dev/null

mirage-migrate --device bench --base trixie --force --output json >/dev/null
start=$(date +%s.%N)
sync_ep >"$B/migrate.json"
end=$(date +%s.%N)
read -r wire fetched delta local switch < <(python3 -c '
import json, sys
o = json.load(sys.stdin)["order"]
a = o["apply"]
steps = {s["step"]: s for s in o["steps"]}
switch = steps["old_root"].get("seconds", 0) + steps["applied"].get("seconds", 0)
print(o["wire_bytes"], a["bytes_fetched"], a["bytes_delta"], a["bytes_local"], switch)' <"$B/migrate.json")
full=$(find "$new" -type f -printf '%s\n' | awk '{ t += $1 } END { print t + 0 }')

# rsync of the same trees through a local daemon.
cp -a "$old" "$B/rsync-target"
port=$((20000 + RANDOM % 20000))
printf 'uid = root\ngid = root\nuse chroot = no\n[trixie]\npath = %s\nread only = yes\n' "$new" >"$B/rsyncd.conf"
rsync --daemon --no-detach --address=127.0.0.1 --port="$port" --config="$B/rsyncd.conf" &
daemon_pid=$!
for _ in $(seq 1 50); do rsync --port="$port" rsync://127.0.0.1/ >/dev/null 2>&1 && break; sleep 0.1; done
rsync -aHAX --delete --numeric-ids --stats "rsync://127.0.0.1:$port/trixie/" "$B/rsync-target/" >"$B/rsync.txt"
rsync_bytes=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$B/rsync.txt" | tr -d ,)

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
echo "trixie base       $(mb "$full") of files"
echo "migration wire    $(mb "$wire")  ($(ratio "$wire" "$full") x the trixie base, $(ratio "$wire" "$rsync_bytes") x rsync)"
echo "apply             fetched $(mb "$fetched"), as deltas $(mb "$delta"), found on the device $(mb "$local")"
echo "rsync (daemon)    $(mb "$rsync_bytes")"
echo "switch            $(awk -v s="$switch" 'BEGIN { printf "%.2f s", s }') (linking /old-root + apply: the downtime offline)"
echo "sync, migrating   $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f s", b - a }')"

#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): the OS migration of an endpoint that
# has the bookworm base to the trixie base (issue 14's Performance section).
#   tests/bench/migrate-bytes.sh [BUILD_DIR]        # as root: whole roots, and it drops caches
# Data: the debootstrap bookworm and trixie minbase roots the tests cache (tests/e2e/lib.sh
# make_debian; debootstrap runs once when a cache is missing). Both are captured as base
# layers on a local store (the protocol over a pipe: the bytes an endpoint receives are
# counted as on a network). Three endpoints: two copies of the bookworm root given the
# bookworm base ("warm" and "cold"), and an empty one. Measured, in one run:
#   trixie files      the trixie base's file bytes (uncompressed)
#   full install      the bytes the empty endpoint receives when given the trixie base
#                     (what an endpoint with nothing of it downloads)
#   migration         the bytes the migration order receives (trees, manifests, chunks
#                     not found on the device, deltas: its report's wire_bytes), and the
#                     apply's bytes fetched whole, as deltas and found on the device
#   rsync, rsync -z   the bytes an rsync daemon on 127.0.0.1 sends to turn a copy of the
#                     bookworm root into the trixie root (rsync -aHAX --delete
#                     --numeric-ids, then with -z; the client's "Total bytes received")
#   times             from the migration's report (its steps): images (composing the
#                     old and new images, from the end of the protecting snapshot),
#                     linking /old-root, the apply's staging and its commit; the
#                     switch = images + /old-root + apply (protecting snapshot to the
#                     end of the apply); the downtime if the switch ran offline =
#                     /old-root + the apply's commit (the span in which the system area
#                     must be at rest or is being switched: staging only writes new
#                     files beside their targets); and the whole migrating sync. The
#                     "warm" endpoint migrates with its files in the page cache, the
#                     "cold" one after the caches are dropped.
# Prints a Markdown table (for the README) and the load average before and after.
# BENCH_SMALL=1 runs it on two small synthetic trees instead (a smoke run, seconds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
[ "$(id -u)" = 0 ] || { echo "run as root (a whole root's owners; dropping caches)" >&2; exit 1; }
command -v rsync >/dev/null || { echo "rsync is not installed" >&2; exit 1; }
B=${BENCH_DIR:-/var/tmp/bench-migrate-bytes}
rm -rf "$B"; mkdir -p "$B"
daemon_pid=
trap '[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; rm -rf "$B"' EXIT
export MIRAGE_HOME="$B/mirage"
unset MIRAGE_SERVER MIRAGE_TOKEN
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say() { echo "$(date -u +%H:%M:%S) $*" >&2; }

old=$B/bookworm new=$B/trixie
if [ -n "${BENCH_SMALL:-}" ]; then
  for r in "$old" "$new"; do mkdir -p "$r/etc" "$r/usr/bin" "$r/var/lib/dpkg"; done
  echo 12.8 >"$old/etc/debian_version"; echo 13.1 >"$new/etc/debian_version"
  head -c 4000000 /dev/urandom >"$old/usr/bin/big"
  cp "$old/usr/bin/big" "$new/usr/bin/big"
  printf 'changed' | dd of="$new/usr/bin/big" bs=1 seek=2000000 conv=notrunc status=none
  head -c 500000 /dev/urandom >"$new/usr/bin/new"
else
  say "unpacking the bookworm and trixie roots"
  unpack_debian bookworm "$old"
  unpack_debian trixie "$new"
fi
say "capturing both bases"
mirage-capture base --root "$old" --name bookworm --output json >/dev/null
mirage-capture base --root "$new" --name trixie --output json >/dev/null

# ep_sync NAME [ARGS...]: one sync of endpoint NAME (root $B/NAME, state $B/state-NAME).
ep_sync() { local n=$1; shift; mirage-centralize --root "$B/$n" --device-id "$n" --state "$B/state-$n" --output json "$@"; }
# enrol NAME BASE: registered, accepted, given BASE, synced.
enrol() {
  ep_sync "$1" >/dev/null 2>&1 || true
  mirage-centralize accept "$1" >/dev/null
  mirage-assign --device "$1" --base "$2" --output json >/dev/null
  ep_sync "$1" >"$B/$1-given.json"
}
say "three endpoints: two with the bookworm base, one empty"
cp -a "$old" "$B/warm"; cp -a "$old" "$B/cold"; mkdir "$B/fresh"
enrol warm bookworm
enrol cold bookworm
enrol fresh trixie
full_wire=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["order"]["wire_bytes"])' <"$B/fresh-given.json")
rm -rf "$B/fresh"

say "migrating warm (page cache warm)"
ep_sync warm >/dev/null  # an unchanged sync first: its files read into the page cache
mirage-migrate --device warm --base trixie --force --output json >/dev/null
ep_sync warm >"$B/warm.json"
say "migrating cold (caches dropped)"
mirage-migrate --device cold --base trixie --force --output json >/dev/null
drop_caches
ep_sync cold >"$B/cold.json"

# figures FILE: the migration's figures from a migrating sync's JSON, one line:
# wire fetched delta local images old_root stage commit apply switch downtime order sync
# old_root_files old_root_bytes
figures() {
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
o = r["order"]
a = o["apply"]
s = {x["step"]: x for x in o["steps"]}
images, linked, applied = s["images"]["seconds"], s["old_root"]["seconds"], s["applied"]["seconds"]
print(o["wire_bytes"], a["bytes_fetched"], a["bytes_delta"], a["bytes_local"], images, linked,
      a["stage_seconds"], a["commit_seconds"], applied, images + linked + applied,
      linked + a["commit_seconds"], o["seconds"], r["seconds"], s["old_root"]["files"], s["old_root"]["bytes"])' "$1"
}
read -r wire fetched delta local w_images w_link w_stage w_commit w_apply w_switch w_down w_order w_sync \
  or_files or_bytes < <(figures "$B/warm.json")
read -r cwire _ _ _ c_images c_link c_stage c_commit c_apply c_switch c_down c_order c_sync _ _ \
  < <(figures "$B/cold.json")
[ "$wire" = "$cwire" ] || say "note: the two migrations' wire bytes differ ($wire, $cwire)"
full=$(find "$new" -type f -printf '%s\n' | awk '{ t += $1 } END { print t + 0 }')

# rsync of the same trees through a local daemon, plain and compressed.
port=$((20000 + RANDOM % 20000))
printf 'uid = root\ngid = root\nuse chroot = no\n[trixie]\npath = %s\nread only = yes\n' "$new" >"$B/rsyncd.conf"
rsync --daemon --no-detach --address=127.0.0.1 --port="$port" --config="$B/rsyncd.conf" &
daemon_pid=$!
for _ in $(seq 1 50); do rsync --port="$port" rsync://127.0.0.1/ >/dev/null 2>&1 && break; sleep 0.1; done
# rsync_run [-z]: prints "bytes seconds" of one rsync into a fresh copy of the bookworm root.
rsync_run() {
  rm -rf "$B/rsync-target"; cp -a "$old" "$B/rsync-target"
  local t0 t1
  t0=$(date +%s.%N)
  rsync -aHAX --delete --numeric-ids --stats "$@" "rsync://127.0.0.1:$port/trixie/" "$B/rsync-target/" >"$B/rsync.txt"
  t1=$(date +%s.%N)
  echo "$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$B/rsync.txt" | tr -d ,) $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}
say "rsync through a daemon on 127.0.0.1"
read -r rsync_bytes rsync_s < <(rsync_run)
read -r rsyncz_bytes rsyncz_s < <(rsync_run -z)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
sec() { awk -v s="$1" 'BEGIN { printf "%.2f s", s }'; }
x() { echo "$(ratio "$1" "$2")×"; }
echo "Migrating an endpoint bookworm -> trixie ($(date -u '+%Y-%m-%d %H:%M UTC'); load average before $load_before, after $load_after)"
echo
echo "| bytes | | vs trixie files | vs full install | vs rsync | vs rsync -z |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| trixie base, files | $(mb "$full") | | | | |"
echo "| full install of the trixie base, wire | $(mb "$full_wire") | $(x "$full_wire" "$full") | | | |"
echo "| **migration, wire** | **$(mb "$wire")** | $(x "$wire" "$full") | $(x "$wire" "$full_wire") | $(x "$wire" "$rsync_bytes") | $(x "$wire" "$rsyncz_bytes") |"
echo "| rsync (daemon on 127.0.0.1) | $(mb "$rsync_bytes") ($(sec "$rsync_s")) | $(x "$rsync_bytes" "$full") | | | |"
echo "| rsync -z | $(mb "$rsyncz_bytes") ($(sec "$rsyncz_s")) | $(x "$rsyncz_bytes" "$full") | | | |"
echo
echo "Apply: fetched whole $(mb "$fetched"), as deltas $(mb "$delta"), found on the device $(mb "$local"); /old-root: $or_files files, $(mb "$or_bytes") linked."
echo
echo "| time | warm | caches dropped |"
echo "|---|---:|---:|"
echo "| images (from the protecting snapshot's end) | $(sec "$w_images") | $(sec "$c_images") |"
echo "| linking /old-root | $(sec "$w_link") | $(sec "$c_link") |"
echo "| apply: staging | $(sec "$w_stage") | $(sec "$c_stage") |"
echo "| apply: commit | $(sec "$w_commit") | $(sec "$c_commit") |"
echo "| **switch** (protecting snapshot to the end of the apply) | **$(sec "$w_switch")** | **$(sec "$c_switch")** |"
echo "| **downtime if offline** (/old-root + commit) | **$(sec "$w_down")** | **$(sec "$c_down")** |"
echo "| the order, all steps | $(sec "$w_order") | $(sec "$c_order") |"
echo "| the migrating sync (two snapshots + the order) | $(sec "$w_sync") | $(sec "$c_sync") |"

#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): a streaming restore of a whole device
# against a full restore, mirage's and restic 0.14's, on the same data in one run.
#   tests/bench/stream-restore.sh [--size SIZE] [--warm-only] [BUILD_DIR]
# Data: the debootstrap bookworm root the tests cache (made by tests/e2e/lib.sh's
# make_bookworm; debootstrap is run once when the cache is missing) plus SIZE (--size,
# e.g. 50M or 1G; else BENCH_USER_BYTES; default 1 GB) of real files (/usr/share,
# /usr/lib) under /home/u, and a 10 MB file
# under /opt (outside the minimal set and the user area: filled last). Both tools back it
# up to local repositories; then each restore runs with caches warm and with caches
# dropped (echo 3 > /proc/sys/vm/drop_caches, as root):
#   usable        mirage-restore --stream: until the minimal set and placeholders are in
#   complete      the same run, until every placeholder is filled
#   full          mirage-restore --path / (no streaming)
#   restic        restic restore latest
#   placeholder   a read of the 10 MB placeholder right after "usable": the time to its
#                 first byte and to its end (target <= 200 ms)
# --warm-only leaves out the runs with caches dropped (a shared machine: dropping the
# page cache slows everyone's work; the figures are a quiet machine's).
# Prints the times and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
user_bytes=${BENCH_USER_BYTES:-1000000000}
warm_only=0
build_arg=
while [ $# -gt 0 ]; do
  case $1 in
    --size)
      [ $# -ge 2 ] || { echo "--size needs a value (e.g. 50M, 1G)" >&2; exit 2; }
      user_bytes=$(numfmt --from=iec "$2" 2>/dev/null) || { echo "--size $2: not a size (e.g. 50M, 1G)" >&2; exit 2; }
      shift 2 ;;
    --warm-only) warm_only=1; shift ;;
    -*) echo "unknown option $1 (--size SIZE, --warm-only, BUILD_DIR)" >&2; exit 2 ;;
    *) build_arg=$1; shift ;;
  esac
done
build=$(cd "${build_arg:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (a whole root's owners, dropping caches)" >&2; exit 1; }
B=${BENCH_DIR:-/var/tmp/bench-stream}
rm -rf "$B"; mkdir -p "$B"
trap 'rm -rf "$B"' EXIT
export MIRAGE_HOME="$B/mirage" RESTIC_REPOSITORY="$B/restic" RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$B/restic-cache"
unset MIRAGE_SERVER

# ---- data ------------------------------------------------------------------
root="$B/root"
unpack_bookworm "$root"
mkdir -p "$root/home/u" "$root/opt/app"
(cd / && find usr/share usr/lib \( -type f -o -type l \) -printf '%s %p\n' 2>/dev/null |
  awk -v budget="$user_bytes" '{ total += $1; if (total > budget) exit; sub(/^[0-9]+ /, ""); print }' |
  cpio -pdm --quiet "$root/home/u" 2>/dev/null) || true
head -c 10M /dev/urandom >"$root/opt/app/data.bin"
echo "data: $(du -sb "$root" | cut -f1) bytes in $(find "$root" -type f | wc -l) files" >&2

restic init >/dev/null
restic backup --compression auto "$root" >/dev/null
mirage-centralize --root "$root" --device-id bench >/dev/null 2>&1 || true
mirage-centralize accept bench >/dev/null
mirage-centralize --root "$root" --device-id bench >/dev/null

now() { date +%s.%N; }
secs() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

# settle warm|cold: what the commands before wrote is put on disk first (sync), so that a
# timed restore that makes its files durable (the streaming one does, with syncfs) does
# not also wait for the bench's own earlier writes (the backups, the last restore: a 1 GB
# run's "usable" took 23.6 s warm against 6.2 s cold without it); cold also drops the caches.
settle() { if [ "$1" = cold ]; then drop_caches; else sync; fi; }

run() {  # run warm|cold: prints "usable complete full restic first_ms read_ms"
  local mode=$1 t0 usable usable_at complete full restic_t first_ms read_ms marked pid
  rm -rf "$B/out"; settle "$mode"
  t0=$(now); mirage-restore --device bench --path / --to "$B/out" --output json >/dev/null; full=$(secs "$t0" "$(now)")
  rm -rf "$B/out"; settle "$mode"
  t0=$(now); restic restore latest --target "$B/out" >/dev/null; restic_t=$(secs "$t0" "$(now)")
  rm -rf "$B/out" "$MIRAGE_HOME/restore"; settle "$mode"
  t0=$(now)
  mirage-restore --device bench --path / --to "$B/out" --stream --output json >"$B/stream.json" 2>/dev/null &
  pid=$!
  # One process, started with the restore (its start-up, seconds on a loaded machine, is
  # not in what it measures): it watches the status file, notes when the tree is usable,
  # and at once reads the 10 MB placeholder: the time to its first byte and to its end,
  # and whether it was still a placeholder when opened (when not, the fill was first and
  # the read measures nothing).
  read -r usable_at first_ms read_ms marked < <(python3 - "$MIRAGE_HOME/restore/bench.json" "$B/out/opt/app/data.bin" $pid <<'PY'
import json, os, sys, time
status, path, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 1800
while time.time() < deadline:
    try:
        if json.load(open(status)).get("stage") in ("filling", "done"):
            break
    except (OSError, ValueError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.005)
usable_at = time.time()
try:
    os.getxattr(path, "user.mirage.placeholder")
    marked = "marked"
except OSError:
    marked = "filled"
t0 = time.monotonic()
with open(path, "rb", buffering=0) as f:
    f.read(1)
    first = time.monotonic()
    while f.read(1 << 20):
        pass
end = time.monotonic()
print("%.3f %d %d %s" % (usable_at, (first - t0) * 1000, (end - t0) * 1000, marked))
PY
)
  usable=$(secs "$t0" "$usable_at")
  [ "$marked" = marked ] || echo "note: the 10 MB file was filled before the read (the read measures no placeholder)" >&2
  wait $pid
  complete=$(secs "$t0" "$(now)")
  cmp -s "$root/opt/app/data.bin" "$B/out/opt/app/data.bin" || echo "WRONG BYTES in the placeholder read" >&2
  echo "$usable $complete $full $restic_t $first_ms $read_ms"
}
[ "$warm_only" = 1 ] && echo "caches warm (--warm-only)" >&2 || echo "caches warm, then dropped" >&2
read -r wu wc wf wr wfirst wms < <(run warm)
cold=()
if [ "$warm_only" = 0 ]; then
  read -r cu cc cf cr cfirst cms < <(run cold)
  cold=("$cu" "$cc" "$cf" "$cr" "$cfirst" "$cms")
fi
python3 - "$wu" "$wc" "$wf" "$wr" "$wfirst" "$wms" "${cold[@]}" <<'PY'
import sys
v = list(map(float, sys.argv[1:]))
runs = (("warm", v[:6]), ("cold", v[6:])) if len(v) == 12 else (("warm", v[:6]),)
for label, (u, c, f, r, first, ms) in runs:
    print(f"caches {label}: usable after {u:.2f} s, complete {c:.2f} s; full restore {f:.2f} s; restic restore {r:.2f} s")
    print(f"  usable / full restore = {u / f:.2f}x, usable / restic = {u / r:.2f}x, full / restic = {f / r:.2f}x")
    print(f"  read of a 10 MB placeholder not yet filled: first byte {first:.0f} ms, all {ms:.0f} ms (target <= 200 ms)")
PY

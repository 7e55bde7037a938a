#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): reading a snapshot through a FUSE
# mount, `mirage-restore mount` against `restic mount` (restic 0.14) on the same data in
# one run, on this machine.
#   tests/bench/mount-vs-restic.sh [BUILD_DIR]
# Data: one directory of 10,000 small files (as browse-vs-restic.sh makes it) and one
# large file of random bytes ($BENCH_FILE_MB, default 1000 MB), backed up once by each
# tool into its local repository (mirage's embedded store, opened by each command).
# Measured on a fresh mount each run (so the kernel's page cache holds nothing of it),
# the best of $BENCH_RUNS runs (default 3):
#   listing the directory: `ls` (names), the first thing on the mount   target <= 100 ms
#   then `ls -l` of it (an lstat and ls's two xattr probes per entry: each
#   probe is a FUSE request, as the kernel keeps no xattrs)
#   reading the large file sequentially (cat > /dev/null)                 target >= 200 MB/s
# restic's FUSE library runs `fusermount`; Debian's fuse3 has only fusermount3, which
# speaks the same protocol: a link to it in a private PATH directory stands in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "fusermount3 is missing (apt-get install fuse3)" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "/dev/fuse is missing" >&2; exit 1; }
file_mb=${BENCH_FILE_MB:-1000}
runs=${BENCH_RUNS:-3}
B=${BENCH_DIR:-/var/tmp/bench-mount}
mnt="$B/mnt"
MOUNT_PID=
unmount() {
  if [ -n "$MOUNT_PID" ]; then
    kill -TERM "$MOUNT_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
  fi
  # /proc/mounts, not mountpoint(1): a stale mount fails its stat
  if grep -q " $mnt fuse" /proc/mounts; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; fi
}
trap 'unmount; rm -rf "$B"' EXIT
unmount
rm -rf "$B"; mkdir -p "$B" "$mnt" "$B/bin"
ln -s "$(command -v fusermount3)" "$B/bin/fusermount"
data="$B/data"; mkdir -p "$data/big-dir"
export MIRAGE_HOME="$B/mirage" RESTIC_REPOSITORY="$B/restic" RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR="$B/restic-cache"
unset MIRAGE_SERVER

echo "preparing 10,000 small files and a $file_mb MB file in $data" >&2
python3 - "$data/big-dir" <<'PY'
import os, sys
for i in range(10000):
    with open(os.path.join(sys.argv[1], "entry-%05d.txt" % i), "w") as f:
        f.write("entry %d\n" % i)
PY
head -c "$((file_mb * 1000000))" /dev/urandom >"$data/big.bin"
restic init >/dev/null
restic backup --compression auto "$data" >/dev/null
mirage-centralize --root "$data" --device-id bench --state "$B/state" >/dev/null 2>&1 || true
mirage-centralize accept bench >/dev/null
mirage-centralize --root "$data" --device-id bench --state "$B/state" --output json >/dev/null

# mount_tool mirage|restic: mounts on $mnt, waits (up to 120 s) for DIR to be there;
# sets $ROOT to the data's directory in the mount.
mount_tool() {
  if [ "$1" = mirage ]; then
    mirage-restore mount --device bench "$mnt" >"$B/mount.out" 2>"$B/mount.err" &
    ROOT="$mnt/latest"
  else
    PATH="$B/bin:$PATH" restic mount --no-default-permissions "$mnt" >"$B/mount.out" 2>"$B/mount.err" &
    ROOT="$mnt/snapshots/latest$data"
  fi
  MOUNT_PID=$!
  for _ in $(seq 1 1200); do
    [ -d "$ROOT/big-dir" ] && return 0
    kill -0 "$MOUNT_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1 mount did not come up: $(cat "$B/mount.err")" >&2
  unmount
  return 1
}

# seconds CMD...: wall seconds of CMD (output to /dev/null) into $SECONDS_TAKEN.
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  SECONDS_TAKEN=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}
# measure TOOL: the best listing time and read rate of $runs fresh mounts into LS and MBS.
least() { if [ -z "$1" ] || awk -v a="$2" -v b="$1" 'BEGIN { exit !(a < b) }'; then echo "$2"; else echo "$1"; fi; }
measure() {
  LS="" LSL="" MBS=""
  for _ in $(seq 1 "$runs"); do
    mount_tool "$1" || continue
    seconds ls "$ROOT/big-dir"
    LS=$(least "$LS" "$SECONDS_TAKEN")
    seconds ls -l "$ROOT/big-dir"
    LSL=$(least "$LSL" "$SECONDS_TAKEN")
    local n; n=$(ls "$ROOT/big-dir" | wc -l)
    [ "$n" = 10000 ] || { echo "$1: the directory lists $n entries" >&2; exit 1; }
    seconds cat "$ROOT/big.bin"
    local rate; rate=$(awk -v s="$SECONDS_TAKEN" -v mb="$file_mb" 'BEGIN { printf "%.0f", mb / s }')
    if [ -z "$MBS" ] || [ "$rate" -gt "$MBS" ]; then MBS=$rate; fi
    cmp "$ROOT/big.bin" "$data/big.bin" || { echo "$1: big.bin differs through the mount" >&2; exit 1; }
    unmount
  done
  LS=${LS:--} LSL=${LSL:--} MBS=${MBS:--}
}
measure restic; r_ls=$LS r_lsl=$LSL r_mbs=$MBS
measure mirage; m_ls=$LS m_lsl=$LSL m_mbs=$MBS
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "data: 10,000 files in one directory, one ${file_mb} MB random file; fresh mount per run, best of $runs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %10s %10s %8s  %s\n' "measure" "restic" "mirage" "ratio" "target"
printf '%-44s %10s %10s %8s  %s\n' "ls of the 10,000-entry directory (s)" "$r_ls" "$m_ls" "$(ratio "$m_ls" "$r_ls")" "<= 0.100 s"
printf '%-44s %10s %10s %8s  %s\n' "then ls -l of it (s)" "$r_lsl" "$m_lsl" "$(ratio "$m_lsl" "$r_lsl")" ""
printf '%-44s %10s %10s %8s  %s\n' "sequential read of the large file (MB/s)" "$r_mbs" "$m_mbs" "$(ratio "$m_mbs" "$r_mbs")" ">= 200 MB/s"

#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): updating an endpoint from one
# layer version to the next, mirage against rsync through a local rsync daemon
# (rsync -a --no-whole-file), same trees, same run.
#   tests/bench/layer-update-vs-rsync.sh [BUILD_DIR]
# Data: ~2 GB of real files (/usr/share, then /usr/lib) as version 1; version 2 changes
# ~7.5 MB of it, in one of two ways, each measured (BENCH_MUTATIONS="overwrite insert"):
#   overwrite  bytes rewritten in place inside 0.67% of the files, new files, deleted files
#   insert     bytes inserted in the middle of 0.67% of the files (shifting what follows),
#              bytes appended to another 0.67%, new files, deleted files
# Mirage: base v1 and v2 captured; an endpoint made from v1 and given v1; then v2 is
# assigned and the endpoint syncs (snapshot before, 3-way apply, snapshot after).
# Then ten new, empty endpoints each receive a small base layer; egress per endpoint.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
command -v rsync >/dev/null || { echo "rsync is not installed (apt-get install rsync)" >&2; exit 1; }
budget=${BENCH_BYTES:-2000000000}
B=${BENCH_DIR:-/var/tmp/mirage-bench-layers}
rm -rf "$B"; mkdir -p "$B"
trap 'kill "${rsync_pid:-}" 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$B"' EXIT
export MIRAGE_HOME="$B/mirage"
unset MIRAGE_SERVER
v1="$B/v1"; v2="$B/v2"; mkdir -p "$v1"

echo "preparing ~$((budget / 1000000)) MB of real files in $v1" >&2
(cd / && find usr/share usr/lib \( -type f -o -type l \) -printf '%s %p\n' 2>/dev/null |
  awk -v budget="$budget" '{ total += $1; if (total > budget) exit; sub(/^[0-9]+ /, ""); print }' |
  cpio -pdm --quiet "$v1" 2>/dev/null) || true
# mutate KIND DIR: turns a copy of v1 into v2; prints the bytes changed.
mutate() {
  python3 - "$1" "$2" <<'PY'
import os, random, sys
kind, root = sys.argv[1], sys.argv[2]
random.seed(7)
files = []
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort()
random.shuffle(files)
changed = 0
big = [f for f in files if os.path.getsize(f) >= 32768]
some = big[: len(files) // 150]
if kind == "overwrite":
    # Rewrite up to 8 KiB inside 0.67% of the files (those of 32 KiB or more).
    for p in some:
        size = os.path.getsize(p)
        n = min(8192, size // 4)
        with open(p, "r+b") as f:
            f.seek(random.randrange(0, size - n))
            f.write(random.randbytes(n))
        changed += n
else:
    # Insert up to 8 KiB in the middle of 0.67% of the files (what follows shifts) ...
    for p in some:
        with open(p, "rb") as f:
            data = f.read()
        n = min(8192, len(data) // 4)
        at = random.randrange(len(data) // 4, 3 * len(data) // 4)
        blob = random.randbytes(n)
        with open(p, "wb") as f:
            f.write(data[:at] + blob + data[at:])
        changed += n
    # ... and append up to 8 KiB to another 0.67%.
    for p in big[len(some) : 2 * len(some)]:
        n = min(8192, os.path.getsize(p) // 4)
        with open(p, "ab") as f:
            f.write(random.randbytes(n))
        changed += n
# New files: 4 MB in 80 files; delete 0.2% of the files.
for i in range(80):
    data = random.randbytes(50000)
    with open(os.path.join(root, "usr/share", f"new-file-{i}.bin"), "wb") as f:
        f.write(data)
    changed += len(data)
for p in files[-(len(files) // 500):]:
    os.remove(p)
print(changed)
PY
}
total=$(du -sb "$v1" | cut -f1)
nfiles=$(find "$v1" -type f | wc -l)
echo "v1: $total bytes in $nfiles files" >&2

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
now() { date +%s.%N; }
rows=()
row() { rows+=("$(printf '%-40s %12s %12s %8s' "$1" "$2" "$3" "$4")"); }

for kind in ${BENCH_MUTATIONS:-overwrite insert}; do
rm -rf "$v2" "$B/ep-rsync" "$B/ep" "$B/state" "$MIRAGE_HOME"
cp -a "$v1" "$v2"
changed=$(mutate "$kind" "$v2")
echo "$kind: v2 changes $changed bytes" >&2
# ---- rsync through a local daemon ---------------------------------------------
port=$((20000 + RANDOM % 20000))
cat >"$B/rsyncd.conf" <<CONF
use chroot = no
[v2]
  path = $v2
  read only = yes
  uid = root
  gid = root
CONF
rsync --daemon --no-detach --address=127.0.0.1 --port=$port --config="$B/rsyncd.conf" &
rsync_pid=$!
sleep 1
cp -a "$v1" "$B/ep-rsync"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
rsync -a --no-whole-file --delete --stats "rsync://127.0.0.1:$port/v2/" "$B/ep-rsync/" >"$B/rsync.out"
t1=$(now)
r_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
r_recv=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$B/rsync.out" | tr -d ,)
r_sent=$(sed -n 's/^Total bytes sent: \([0-9,]*\).*/\1/p' "$B/rsync.out" | tr -d ,)
r_wire=$((r_recv + r_sent))
kill "$rsync_pid"; wait "$rsync_pid" 2>/dev/null || true; rsync_pid=

# ---- mirage ----------------------------------------------------------------------
mirage-capture base --root "$v1" --name bench --output json >"$B/cap1.json"
mirage-capture base --root "$v2" --name bench --output json >"$B/cap2.json"
cp -a "$v1" "$B/ep"
state="$B/state"
mirage-centralize --root "$B/ep" --device-id ep --state "$state" >/dev/null 2>&1 || true
mirage-centralize accept ep >/dev/null
mirage-assign --device ep --base bench@1 >/dev/null
mirage-centralize --root "$B/ep" --device-id ep --state "$state" --output json >"$B/apply1.json"
mirage-assign --device ep --base bench@2 >/dev/null
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
mirage-centralize --root "$B/ep" --device-id ep --state "$state" --output json >"$B/apply2.json"
t1=$(now)
m_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
read -r m_wire m_apply m_local m_fetched <<<"$(python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))["order"]
print(o["wire_bytes"], "%.2f" % o["seconds"], o["apply"]["bytes_local"], o["apply"]["bytes_fetched"])' "$B/apply2.json")"
# The endpoint now equals v2 (less nothing: the bench tree has no identity or user area).
python3 "$here/../e2e/listing.py" "$v2" >"$B/list.v2"
python3 "$here/../e2e/listing.py" "$B/ep" >"$B/list.ep"
python3 "$here/../e2e/listing.py" "$B/ep-rsync" >"$B/list.rsync"
if ! diff -q "$B/list.v2" "$B/list.ep" >/dev/null; then diff "$B/list.v2" "$B/list.ep" | head >&2; echo "MISMATCH: mirage's endpoint differs from v2" >&2; fi
if ! diff -q "$B/list.v2" "$B/list.rsync" >/dev/null; then echo "note: rsync's endpoint differs from v2 (it does not keep hardlinks or xattrs without -HAX)" >&2; fi

row "[$kind] changed bytes (MB)" "$(mb "$changed")" "$(mb "$changed")" ""
row "bytes on the wire (MB)" "$(mb "$r_wire")" "$(mb "$m_wire")" "$(ratio "$m_wire" "$r_wire")"
row "update time, whole sync (s)" "$r_secs" "$m_secs" "$(ratio "$m_secs" "$r_secs")"
row "  of which the apply (s)" "" "$m_apply" "$(ratio "$m_apply" "$r_secs")"
row "  chunks reused from the endpoint (MB)" "" "$(mb "$m_local")" ""
row "  chunks fetched (MB, plaintext)" "" "$(mb "$m_fetched")" ""

done

# ---- ten new endpoints receive the same layer --------------------------------------
small="$B/small"; mkdir -p "$small"
(cd "$v2" && find usr/share -maxdepth 3 -print0 | head -z -n 3000 | cpio -0pdm --quiet "$small" 2>/dev/null) || true
mirage-capture base --root "$small" --name small --output json >/dev/null
small_bytes=$(du -sb "$small" | cut -f1)
egress=()
for i in $(seq 1 10); do
  mkdir -p "$B/new$i"
  mirage-centralize --root "$B/new$i" --device-id "new$i" --state "$B/state$i" >/dev/null 2>&1 || true
  mirage-centralize accept "new$i" >/dev/null
  mirage-assign --device "new$i" --base small >/dev/null
  mirage-centralize --root "$B/new$i" --device-id "new$i" --state "$B/state$i" --output json >"$B/new$i.json"
  egress+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["order"]["wire_bytes"])' "$B/new$i.json")")
  rm -rf "$B/new$i"
done

echo
echo "Layer update, $(mb "$total") MB in $nfiles files ($(date -u +%F), $(nproc) cores)"
printf '%-40s %12s %12s %8s\n' "measure" "rsync" "mirage" "ratio"
printf '%s\n' "${rows[@]}"
echo
echo "Ten new endpoints receiving layer 'small' ($(mb "$small_bytes") MB): server egress per endpoint (MB)"
for i in "${!egress[@]}"; do printf '  endpoint %2d  %s\n' "$((i + 1))" "$(mb "${egress[$i]}")"; done

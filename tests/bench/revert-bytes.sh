#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): the bytes a `system` revert moves over
# the wire after 1% of the machine area changed, against the size of the change.
#   tests/bench/revert-bytes.sh [BUILD_DIR]
# Data: the debootstrap bookworm root the tests cache (tests/e2e/lib.sh's make_bookworm;
# debootstrap runs once when the cache is missing) plus 50 MB of user files under
# /home/u. After snapshot S, files of /usr and /var/lib (picked at random, seeded) whose
# sizes add up to BENCH_CHANGE_PERCENT (1) % of the machine area are changed: every other
# one deleted, the rest with 4 KB overwritten in the middle; the user's files change too
# (a revert --mode system must leave them). Then `mirage-restore --on-device --mode system`
# and the sync that carries it out, on a local store (the protocol over a pipe, the bytes
# the endpoint receives counted as on a network). Prints:
#   changed       files touched, their bytes, and the bytes that differ (deleted files
#                 whole, 4 KB per overwritten file)
#   wire          the revert's bytes received (its order result's wire_bytes)
#   fetched/delta/local  the apply's bytes fetched whole, as deltas, found on the device
# and wire against both sizes of the change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
[ "$(id -u)" = 0 ] || { echo "run as root (a whole root's owners)" >&2; exit 1; }
percent=${BENCH_CHANGE_PERCENT:-1}
B=${BENCH_DIR:-/var/tmp/bench-revert-bytes}
rm -rf "$B"; mkdir -p "$B"
trap 'rm -rf "$B"' EXIT
export MIRAGE_HOME="$B/mirage"
unset MIRAGE_SERVER MIRAGE_TOKEN

root="$B/root"
unpack_bookworm "$root"
mkdir -p "$root/home/u"
(cd / && find usr/share/doc \( -type f \) -printf '%s %p\n' 2>/dev/null |
  awk '{ total += $1; if (total > 50000000) exit; sub(/^[0-9]+ /, ""); print }' |
  cpio -pdm --quiet "$root/home/u" 2>/dev/null) || true

sync_ep() { mirage-centralize --root "$root" --device-id bench --state "$B/state" --output json "$@"; }
sync_ep >/dev/null 2>&1 || true
mirage-centralize accept bench >/dev/null
sync_ep >"$B/s.json"
S=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["snapshot_id"])' <"$B/s.json")

# The machine area's bytes: everything outside the user area and the unprotected paths.
machine=$(cd "$root" && find . -xdev -type f -not -path './home/*' -not -path './root/*' -not -path './srv/*' \
  -not -path './proc/*' -not -path './sys/*' -not -path './dev/*' -not -path './run/*' -not -path './tmp/*' \
  -not -path './var/tmp/*' -not -path './var/cache/*' -printf '%s\n' | awk '{ t += $1 } END { print t }')
want=$((machine * percent / 100))
read -r nfiles touched differ < <(python3 - "$root" "$want" <<'PY'
import os, random, sys
root, want = sys.argv[1], int(sys.argv[2])
files = []
for top in ("usr", "var/lib"):
    for d, _, names in os.walk(os.path.join(root, top)):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) >= 16384:
                files.append(p)
files.sort()
random.Random(42).shuffle(files)
touched = differ = count = 0
for p in files:
    if touched >= want:
        break
    size = os.path.getsize(p)
    if count % 2 == 0:
        os.unlink(p)
        differ += size
    else:
        with open(p, "r+b") as f:
            f.seek(size // 2)
            f.write(random.Random(count).randbytes(4096))
        differ += 4096
    touched += size
    count += 1
print(count, touched, differ)
PY
)
printf 'changed after S\n' >>"$root/home/u/notes.txt"
sync_ep >/dev/null

mirage-restore --device bench --snapshot "$S" --on-device --mode system --output json >/dev/null
start=$(date +%s.%N)
sync_ep >"$B/revert.json"
end=$(date +%s.%N)
read -r wire fetched delta local < <(python3 -c '
import json, sys
o = json.load(sys.stdin)["order"]
a = o["apply"]
print(o["wire_bytes"], a["bytes_fetched"], a["bytes_delta"], a["bytes_local"])' <"$B/revert.json")

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
echo "machine area      $(mb "$machine")"
echo "changed           $nfiles files, $(mb "$touched") of files ($percent%), $(mb "$differ") differing"
echo "revert wire       $(mb "$wire")  ($(ratio "$wire" "$differ") x the differing bytes, $(ratio "$wire" "$touched") x the touched files)"
echo "apply             fetched $(mb "$fetched"), as deltas $(mb "$delta"), found on the device $(mb "$local")"
echo "sync with revert  $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f s", b - a }')"

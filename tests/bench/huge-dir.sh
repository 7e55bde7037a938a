#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): one directory of N files with long
# names (default 250,000 of ~200 bytes: a 67 MB directory listing), backed up by mirage
# and by restic 0.14 in one run; then one file in it changes and both back up again.
# Prints, for each tool, the first backup's time, the repository growth of the second
# (what one edit in a huge directory costs) and the ratio.
#   tests/bench/huge-dir.sh [BUILD_DIR]      (HUGE_FILES=N to change the count)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 1; }
n=${HUGE_FILES:-250000}
B=${BENCH_DIR:-/var/tmp/mirage-bench-huge}
rm -rf "$B"; mkdir -p "$B"
trap 'rm -rf "$B"' EXIT
export MIRAGE_HOME="$B/mirage" RESTIC_REPOSITORY="$B/restic" RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$B/restic-cache"
unset MIRAGE_SERVER
data="$B/data"
echo "making $n files with long names in one directory" >&2
python3 - "$data/big" "$n" <<'PY'
import os, sys
big, n = sys.argv[1], int(sys.argv[2])
os.makedirs(big)
for i in range(n):
    open(os.path.join(big, "file-%07d-" % i + "x" * 190), "wb").close()
PY
victim="$data/big/file-$(printf '%07d' $((n / 2)))-$(printf 'x%.0s' $(seq 190))"
size() { du -sb "$1" | cut -f1; }
secs() { /usr/bin/time -f %e -o "$B/t" "$@" >/dev/null 2>"$B/err" || { cat "$B/err" >&2; exit 1; }; cat "$B/t"; }

restic init >/dev/null
drop_caches; r_t1=$(secs restic backup "$data")
mirage-centralize --root "$data" --device-id huge --state "$B/state" >/dev/null 2>&1 || true
mirage-centralize accept huge >/dev/null
drop_caches; m_t1=$(secs mirage-centralize --root "$data" --device-id huge --state "$B/state")
r_s1=$(size "$RESTIC_REPOSITORY"); m_s1=$(size "$MIRAGE_HOME")
echo edited >"$victim"
r_t2=$(secs restic backup "$data")
m_t2=$(secs mirage-centralize --root "$data" --device-id huge --state "$B/state")
r_d=$(( $(size "$RESTIC_REPOSITORY") - r_s1 )); m_d=$(( $(size "$MIRAGE_HOME") - m_s1 ))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
printf '\n%-44s %12s %12s %8s\n' "one directory of $n files" "restic 0.14" "mirage" "ratio"
printf '%-44s %12s %12s %8s\n' "first backup, caches dropped (s)" "$r_t1" "$m_t1" "$(ratio "$m_t1" "$r_t1")"
printf '%-44s %12s %12s %8s\n' "repository after it (bytes)" "$r_s1" "$m_s1" "$(ratio "$m_s1" "$r_s1")"
printf '%-44s %12s %12s %8s\n' "one file edited: backup, caches warm (s)" "$r_t2" "$m_t2" "$(ratio "$m_t2" "$r_t2")"
printf '%-44s %12s %12s %8s\n' "one file edited: repository growth (bytes)" "$r_d" "$m_d" "$(ratio "$m_d" "$r_d")"
echo "ratio = mirage / restic"

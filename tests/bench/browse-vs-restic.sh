#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): browsing snapshots, mirage against
# restic 0.14 on the same data in one run, on this machine.
#   tests/bench/browse-vs-restic.sh [BUILD_DIR]
# Data: ~2 GB of real files (/usr/share, then /usr/lib, as centralize-vs-restic.sh takes
# them) plus one directory of 10,000 small files, backed up by both tools; then 23 more
# snapshots: every sixth after 1% of the files changed in place (a random 4 KiB write),
# the others after 0.05%. Measured, each the best of $BENCH_RUNS runs (default 3), both
# tools on their local repositories (mirage's embedded store is opened by each command,
# as restic opens its repository per command):
#   ls of the 10,000-entry directory    restic ls latest DIR     mirage-restore ls DIR
#   diff of two snapshots 1% apart      restic diff A B          mirage-restore diff A B
#   find of one name over 24 snapshots  restic find NAME         mirage-restore find NAME
# Each measure twice: caches warm, and caches dropped before every run (root only).
# Prints each time, the ratio and the target.
source "$(dirname "$0")/lib.sh"
bench_init /var/tmp/bench-browse "${1:-}"
trap 'rm -rf "$B"' EXIT
runs=${BENCH_RUNS:-3}
snapshots=${BENCH_SNAPSHOTS:-24}

# ---- data (as centralize-vs-restic.sh, plus one big directory) ----------------
prepare_data
big="$data/big-dir"; mkdir -p "$big"
python3 - "$big" <<'PY'
import os, sys
for i in range(10000):
    with open(os.path.join(sys.argv[1], "entry-%05d.txt" % i), "w") as f:
        f.write("entry %d\n" % i)
PY
count_data
# The name find looks for: one file's name, chosen at random but the same every run.
name=$(cd "$data" && find usr -type f -printf '%f\n' | sort | awk 'NR % 997 == 1' | head -20 | tail -1)

change() {  # change PERCENT_TIMES_100 SEED: a random 4 KiB write into that share of the files
  python3 - "$data" "$1" "$2" <<'PY'
import os, random, sys
random.seed(int(sys.argv[3]))
root = sys.argv[1]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))
random.shuffle(files)
for p in files[: max(1, len(files) * int(sys.argv[2]) // 10000)]:
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.seek(random.randrange(0, max(1, size)))
        f.write(os.urandom(min(4096, max(1, size))))
PY
}

restic init >/dev/null
mirage-centralize --root "$data" --device-id bench --state "$state" >/dev/null 2>&1 || true
mirage-centralize accept bench >/dev/null
echo "making $snapshots snapshots with each tool" >&2
for i in $(seq 1 "$snapshots"); do
  if [ "$i" -gt 1 ]; then
    if [ $((i % 6)) = 0 ]; then change 100 "$i"; else change 5 "$i"; fi
  fi
  restic backup --compression auto "$data" >/dev/null
  mirage-centralize --root "$data" --device-id bench --state "$state" --output json >/dev/null
done
# The pair 1% apart: snapshot 5 and 6 (0-based 4 and 5).
read -r m_a m_b < <(mirage-restore snapshots --device bench --output json |
  python3 -c 'import json,sys; l=json.load(sys.stdin)["snapshots"]; print(l[4]["snapshot_id"], l[5]["snapshot_id"])')
read -r r_a r_b < <(restic snapshots --json |
  python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[4]["short_id"], l[5]["short_id"])')

# best LABEL CMD...: the least wall seconds of $runs runs into $BEST (output to $B/LABEL.out);
# with COLD=1 the page cache is dropped before each run (the repositories read from disk).
best() {
  local label=$1; shift
  BEST=""
  for _ in $(seq 1 "$runs"); do
    [ "${COLD:-0}" = 1 ] && drop_caches
    /usr/bin/time -f '%e' -o "$B/time" "$@" >"$B/$label.out" 2>"$B/$label.err" || { cat "$B/$label.err" >&2; exit 1; }
    local t; t=$(cat "$B/time")
    if [ -z "$BEST" ] || awk -v a="$t" -v b="$BEST" 'BEGIN { exit !(a < b) }'; then BEST=$t; fi
  done
}
rows=()
row() { rows+=("$(printf '%-46s %10s %10s %8s  %s' "$1" "$2" "$3" "$4" "$5")"); }

measure() {  # warm|cold: every measure once with caches warm, once dropped
  local how=$1 COLD=0
  [ "$how" = cold ] && COLD=1
  best restic-ls restic ls latest "$big"; r=$BEST
  best mirage-ls mirage-restore ls --device bench "${big#"$data"}" --output json; m=$BEST
  [ "$(wc -l <"$B/mirage-ls.out")" = 10000 ] || { echo "mirage ls listed $(wc -l <"$B/mirage-ls.out") entries" >&2; exit 1; }
  row "ls of a 10,000-entry directory (s), $how" "$r" "$m" "$(ratio "$m" "$r")" "target <= 0.100 s"
  best restic-diff restic diff "$r_a" "$r_b"; r=$BEST
  best mirage-diff mirage-restore diff --device bench "$m_a" "$m_b" --output json; m=$BEST
  changes=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["changes"]))' "$B/mirage-diff.out")
  row "diff of two snapshots 1% apart (s), $how" "$r" "$m" "$(ratio "$m" "$r")" "target <= 0.2x ($changes changes)"
  best restic-find restic find "$name"; r=$BEST
  best mirage-find mirage-restore find --device bench "$name" --output json; m=$BEST
  found=$(wc -l <"$B/mirage-find.out")
  row "find of one name, $snapshots snapshots (s), $how" "$r" "$m" "$(ratio "$m" "$r")" "target <= 0.2x ($found versions of $name)"
}
measure warm
measure cold
echo
echo "data: $total bytes, $nfiles files; $snapshots snapshots; best of $runs runs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-46s %10s %10s %8s\n' "measure" "restic" "mirage" "ratio"
printf '%s\n' "${rows[@]}"

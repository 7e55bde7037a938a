#!/usr/bin/env bash
# Benchmark (not a test; never fails on a number): mirage against restic 0.14
# (--compression auto) on the same data in one run, on this machine.
#   tests/bench/centralize-vs-restic.sh [BUILD_DIR]
# Data: ~2 GB of real files (/usr/share, then /usr/lib subtrees) copied to $BENCH_DIR;
# the first backup runs twice, from fresh repositories: with the page cache dropped
# before each tool (needs root), then with the data read into it beforehand;
# then 1% of files changed in place, 0.5% added, 0.5% deleted; then a sibling copy
# plus 200 MB of new data as a second device. Prints a table with the ratios.
source "$(dirname "$0")/lib.sh"
bench_init /var/tmp/mirage-bench "${1:-}"
trap 'rm -rf "$B" /dev/shm/mirage-bench-*' EXIT

# ---- data ----------------------------------------------------------------
prepare_data
count_data

# run LABEL CMD...: wall seconds, peak RSS (KiB) and CPU seconds of CMD into $SECS/$RSS/$CPU.
run() {
  local label=$1; shift
  /usr/bin/time -f '%e %M %U %S' -o "$B/time" "$@" >"$B/$label.out" 2>"$B/$label.err" || { cat "$B/$label.err" >&2; exit 1; }
  read -r SECS RSS user sys <"$B/time"
  CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')  # with the children it waited for
}
size() { du -sb "$1" | cut -f1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
rows=()
row() { rows+=("$(printf '%-34s %14s %14s %8s' "$1" "$2" "$3" "$4")"); }

# ---- first backup: once with the page cache dropped, once with it warm ----------
warm_caches() { find "$data" -type f -print0 | xargs -0 cat >/dev/null; }
first_backup() {  # cold|warm: fresh repositories, then restic and mirage each once
  local how=$1
  rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$MIRAGE_HOME" "$state"
  restic init >/dev/null
  mirage-centralize --root "$data" --device-id bench --state "$state/bench" >/dev/null 2>&1 || true
  mirage-centralize accept bench >/dev/null
  # Each timed run starts with nothing dirty left to write back: the tool before it does
  # not pay for the set-up's writes, nor the tool after it for the 750 MB the one before
  # wrote (dropping the caches syncs first; a warm run syncs).
  if [ "$how" = cold ]; then drop_caches; else warm_caches; sync; fi
  run "restic1-$how" restic backup --compression auto "$data"; r_t1=$SECS; r_rss1=$RSS; r_cpu=$CPU
  if [ "$how" = cold ]; then drop_caches; else sync; fi
  run "mirage1-$how" mirage-centralize --root "$data" --device-id bench --state "$state/bench" --output json
  m_t1=$SECS; m_rss1=$RSS; m_cpu=$CPU
  r_tp=$(awk -v b="$total" -v t="$r_t1" 'BEGIN { printf "%.0f", b / 1e6 / t }')
  m_tp=$(awk -v b="$total" -v t="$m_t1" 'BEGIN { printf "%.0f", b / 1e6 / t }')
  row "first backup, caches $how (MB/s)" "$r_tp" "$m_tp" "$(ratio "$m_tp" "$r_tp")"
  row "  seconds" "$r_t1" "$m_t1" "$(ratio "$m_t1" "$r_t1")"
  row "  CPU seconds (user+sys)" "$r_cpu" "$m_cpu" "$(ratio "$m_cpu" "$r_cpu")"
}
first_backup cold
first_backup warm  # the rest of the bench builds on this one
row "first backup peak RSS (MiB)" "$((r_rss1 / 1024))" "$((m_rss1 / 1024))" "$(ratio "$m_rss1" "$r_rss1")"
row "repository size (MB)" "$(mb "$(size "$RESTIC_REPOSITORY")")" "$(mb "$(size "$MIRAGE_HOME")")" \
  "$(ratio "$(size "$MIRAGE_HOME")" "$(size "$RESTIC_REPOSITORY")")"

# ---- incremental: 1% changed in place, 0.5% added, 0.5% deleted -------------
changed=$(python3 - "$data" <<'PY'
import os, random, sys
random.seed(42)
root = sys.argv[1]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))
random.shuffle(files)
n = len(files)
changed = 0
for p in files[: n // 100]:                     # 1% changed in place
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        at = random.randrange(0, max(1, size))
        f.seek(at)
        blob = os.urandom(min(4096, max(1, size - at)))
        f.write(blob)
        changed += len(blob)
for i, p in enumerate(files[n // 100 : n // 100 + n // 200]):   # 0.5% added (copies of other files, new names)
    q = p + ".added%d" % i
    with open(p, "rb") as a, open(q, "wb") as b:
        data = a.read()
        b.write(data)
        changed += len(data)
for p in files[n // 100 + n // 200 : n // 100 + n // 100]:      # 0.5% deleted
    os.unlink(p)
print(changed)
PY
)
r_before=$(size "$RESTIC_REPOSITORY"); m_before=$(size "$MIRAGE_HOME")
sync
run restic2 restic backup --compression auto "$data"; r_t2=$SECS
sync
run mirage2 mirage-centralize --root "$data" --device-id bench --state "$state/bench" --output json; m_t2=$SECS
r_inc=$(( $(size "$RESTIC_REPOSITORY") - r_before )); m_inc=$(( $(size "$MIRAGE_HOME") - m_before ))
row "incremental time (s)" "$r_t2" "$m_t2" "$(ratio "$m_t2" "$r_t2")"
row "incremental stored (MB)" "$(mb $r_inc)" "$(mb $m_inc)" "$(ratio $m_inc $r_inc)"
row "  changed bytes (MB)" "$(mb "$changed")" "$(mb "$changed")" "$(ratio $m_inc "$changed")"

# ---- full restore to tmpfs ----------------------------------------------------
drop_caches
run restic3 restic restore latest --target /dev/shm/mirage-bench-restic; r_t3=$SECS
rm -rf /dev/shm/mirage-bench-restic
drop_caches
run mirage3 mirage-restore --device bench --path / --to /dev/shm/mirage-bench-mirage; m_t3=$SECS
diff -r --no-dereference -q "$data" /dev/shm/mirage-bench-mirage >/dev/null || echo "WARNING: mirage restore differs" >&2
rm -rf /dev/shm/mirage-bench-mirage
cur=$(size "$data")
r_rt=$(awk -v b="$cur" -v t="$r_t3" 'BEGIN { printf "%.0f", b / 1e6 / t }')
m_rt=$(awk -v b="$cur" -v t="$m_t3" 'BEGIN { printf "%.0f", b / 1e6 / t }')
row "full restore to tmpfs (MB/s)" "$r_rt" "$m_rt" "$(ratio "$m_rt" "$r_rt")"

# ---- single-file restore -------------------------------------------------------
# Five runs of each tool, alternating, each into an empty target; the median is the
# figure (one run is a 10-100 ms moment a busy host can double), timed to the millisecond.
one=$(find "$data" -type f -size +100k | sort | sed -n 100p); rel=${one#"$data"}
wall() {  # CMD...: its wall seconds, to the millisecond
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$B/one.out" 2>"$B/one.err" || { cat "$B/one.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
r_all=(); m_all=()
for i in 1 2 3 4 5; do
  rm -rf /dev/shm/mirage-bench-r1 /dev/shm/mirage-bench-m1
  r_all+=("$(wall restic restore latest --target /dev/shm/mirage-bench-r1 --include "$one")")
  m_all+=("$(wall mirage-restore --device bench --path "$rel" --to /dev/shm/mirage-bench-m1)")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
r_t4=$(median "${r_all[@]}"); m_t4=$(median "${m_all[@]}")
echo "single-file restore, five runs: restic ${r_all[*]} s; mirage ${m_all[*]} s" >&2
cmp "$one" "/dev/shm/mirage-bench-m1$rel" || echo "WARNING: single file differs" >&2
row "single-file restore (s, med. of 5)" "$r_t4" "$m_t4" "$(ratio "$m_t4" "$r_t4")"

# ---- sibling device: a copy plus 200 MB of new data --------------------------------
sib="$B/sibling"; cp -a "$data" "$sib"; mkdir -p "$sib/newdata"
for i in $(seq 1 20); do head -c 10000000 /dev/urandom >"$sib/newdata/blob$i"; done
r_before=$(size "$RESTIC_REPOSITORY"); m_before=$(size "$MIRAGE_HOME")
run restic5 restic backup --compression auto "$sib"; r_t5=$SECS
mirage-centralize --root "$sib" --device-id bench-sibling --state "$state/sibling" >/dev/null 2>&1 || true
mirage-centralize accept bench-sibling >/dev/null
run mirage5 mirage-centralize --root "$sib" --device-id bench-sibling --state "$state/sibling" --output json; m_t5=$SECS
r_sib=$(( $(size "$RESTIC_REPOSITORY") - r_before )); m_sib=$(( $(size "$MIRAGE_HOME") - m_before ))
row "sibling stored (MB, 200 unique)" "$(mb $r_sib)" "$(mb $m_sib)" "$(ratio $m_sib 200000000)"
row "sibling time (s)" "$r_t5" "$m_t5" "$(ratio "$m_t5" "$r_t5")"

printf '\n%-34s %14s %14s %8s\n' "measure ($(mb "$total") MB, $nfiles files)" "restic 0.14" "mirage" "ratio"
printf '%s\n' "${rows[@]}"
echo
echo "ratio = mirage / restic, except 'changed bytes' and 'sibling stored' rows: mirage / changed (unique) bytes"

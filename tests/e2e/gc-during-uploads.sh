#!/usr/bin/env bash
# GC beside live traffic. Three endpoints sync six times each with 5% of their files
# changed (retention keeps two snapshots, so every sync makes garbage) while GC runs in
# a loop, repacking eagerly, and a help-desk restore of a pinned snapshot runs in
# another loop: every sync, GC run and restore succeeds. Afterwards GC leaves nothing
# unreferenced, `check --read-data` is clean, and every device's latest snapshot and the
# pinned one restore byte for byte. An upload in flight (chunks sent, no commit yet) is
# pinned by the grace period and collected once it has passed.
source "$(dirname "$0")/lib.sh"
need python3
echo '{"retention": {"last": 2, "hourly": 0, "daily": 0, "weekly": 0, "monthly": 0}}' >"$TEST_TMP/policy.json"
mirage policy set short --file "$TEST_TMP/policy.json" >/dev/null
change() {  # change DIR ROUND: rewrite 10 files, delete 2, add 2 (of about 200)
  python3 - "$1" "$2" <<'PY'
import os, random, sys
d, r = sys.argv[1], int(sys.argv[2])
rnd = random.Random(hash((d, r)))
files = sorted(os.listdir(os.path.join(d, "data")))
for name in rnd.sample(files, 10):
    with open(os.path.join(d, "data", name), "wb") as f: f.write(os.urandom(rnd.randint(1000, 60000)))
for name in rnd.sample(files, 2): os.remove(os.path.join(d, "data", name))
for i in range(2):
    with open(os.path.join(d, "data", f"new-{r}-{i}"), "wb") as f: f.write(os.urandom(30000))
PY
}
for i in 1 2 3; do
  mkdir -p "$TEST_TMP/src$i/data" "$TEST_TMP/src$i/etc"
  for f in $(seq 1 200); do head -c $((RANDOM % 40000 + 500)) /dev/urandom >"$TEST_TMP/src$i/data/f$f"; done
  seq 1 100000 >"$TEST_TMP/src$i/etc/shared"   # the same on every device
  centralize_accepted "$TEST_TMP/src$i" "dev$i" >/dev/null
  mirage policy assign short --device "dev$i" >/dev/null
done
# A pinned snapshot of dev1 (on request), restored again and again below.
mirage-centralize request --device dev1 --reason gc-test >/dev/null
mirage-centralize --root "$TEST_TMP/src1" --device-id dev1 --output json >/dev/null
cp -a "$TEST_TMP/src1" "$TEST_TMP/pinned-state"
pinned=$(mirage-restore snapshots --device dev1 --output json |
  python3 -c 'import json,sys; print([s["snapshot_id"] for s in json.load(sys.stdin)["snapshots"] if s["pinned"]][0])')

date +%s >"$TEST_TMP/start"
pids=()
for i in 1 2 3; do
  (for r in 1 2 3 4 5 6; do
     change "$TEST_TMP/src$i" "$r"
     mirage-centralize --root "$TEST_TMP/src$i" --device-id "dev$i" --output json >>"$TEST_TMP/sync$i.log" 2>&1 ||
       { echo "sync $i/$r failed" >>"$TEST_TMP/failures"; }
   done) &
  pids+=($!)
done
(n=0
 while [ ! -e "$TEST_TMP/syncs-done" ] && [ $n -lt 60 ]; do
   n=$((n + 1))
   mirage gc --grace 0s --repack-below 0.95 --output json >>"$TEST_TMP/gc.log" 2>&1 || echo "gc $n failed" >>"$TEST_TMP/failures"
 done
 echo "$n" >"$TEST_TMP/gc-runs") &
gc_pid=$!
(n=0
 while [ ! -e "$TEST_TMP/syncs-done" ] && [ $n -lt 60 ]; do
   n=$((n + 1))
   rm -rf "$TEST_TMP/restore-loop"
   mirage-restore --device dev1 --snapshot "$pinned" --path / --to "$TEST_TMP/restore-loop" --output json \
     >>"$TEST_TMP/restore.log" 2>&1 || echo "restore $n failed" >>"$TEST_TMP/failures"
 done) &
restore_pid=$!
for p in "${pids[@]}"; do wait "$p"; done
touch "$TEST_TMP/syncs-done"
wait "$gc_pid" "$restore_pid"
[ ! -e "$TEST_TMP/failures" ] || fail "$(cat "$TEST_TMP/failures"; tail -n 5 "$TEST_TMP"/*.log)"
runs=$(cat "$TEST_TMP/gc-runs")
[ "$runs" -ge 2 ] || fail "GC ran only $runs times beside the syncs"
python3 - "$TEST_TMP/gc.log" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
dec = json.JSONDecoder(); i = 0; deleted = repacked = 0
while i < len(text):
    while i < len(text) and text[i].isspace(): i += 1
    if i >= len(text): break
    r, i = dec.raw_decode(text, i)
    deleted += r["deleted"]; repacked += r["repacked"] + r["retired"]
assert deleted > 0, "GC deleted nothing while syncs made garbage"
assert repacked > 0, "GC rewrote no pack"
print("gc ran", text.count('"dry_run"'), "times, deleted", deleted, "chunks, rewrote or retired", repacked, "packs")
PY
[ $? = 0 ] || fail "GC did no work"
# Afterwards: nothing unreferenced is left, everything referenced is intact.
expect_exit 0 mirage gc --grace 0s --output json
expect_exit 0 mirage gc --dry-run --grace 0s --output json
expect_contains "$OUT" '"unreferenced":0'
expect_exit 0 mirage check --read-data --output json
for i in 1 2 3; do
  rm -rf "$TEST_TMP/back$i"
  mirage-restore --device "dev$i" --path / --to "$TEST_TMP/back$i" >/dev/null
  expect_same_tree "$TEST_TMP/src$i" "$TEST_TMP/back$i"
done
rm -rf "$TEST_TMP/back-pinned"
mirage-restore --device dev1 --snapshot "$pinned" --path / --to "$TEST_TMP/back-pinned" >/dev/null
expect_same_tree "$TEST_TMP/pinned-state" "$TEST_TMP/back-pinned"
expect_exit 0 mirage events --type gc
expect_contains "$OUT" '"deleted"'
expect_contains "$OUT" '"transaction":"gc"'
expect_exit 0 mirage events --type restore
expect_contains "$OUT" '"transaction":"restore"'

# An upload in flight: chunks sent, then the client dies before its commit.
head -c 500000 /dev/urandom >"$TEST_TMP/src2/data/in-flight"
expect_exit 99 env MIRAGE_TEST_CRASH_BEFORE_COMMIT=1 mirage-centralize --root "$TEST_TMP/src2" --device-id dev2
expect_exit 0 mirage gc --grace 0s --output json
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["pinned"] > 0 and r["deleted"] == 0 and r["uploads_in_flight"] == 1, r' "$OUT" ||
  fail "an upload in flight was not pinned: $OUT"
# Two hours on, the silent upload counts as abandoned.
later=$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
expect_exit 0 env MIRAGE_TEST_NOW="$later" mirage gc --grace 0s --output json
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["deleted"] > 0, r' "$OUT" ||
  fail "the abandoned upload was not collected past its grace: $OUT"
# The device's next sync uploads it again and commits.
expect_exit 0 mirage-centralize --root "$TEST_TMP/src2" --device-id dev2 --output json
expect_exit 0 mirage check --read-data --output json
rm -rf "$TEST_TMP/back2"
mirage-restore --device dev2 --path / --to "$TEST_TMP/back2" >/dev/null
expect_same_tree "$TEST_TMP/src2" "$TEST_TMP/back2"
expect_exit 2 mirage gc --grace 0s --repack-below 2
# One GC at a time: another one waits its turn as a precondition error.
need flock
expect_exit 5 flock "$MIRAGE_HOME/gc.lock" mirage gc --grace 0s
expect_contains "$ERR" "another GC is running"
echo ok

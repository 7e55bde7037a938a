#!/usr/bin/env bash
# Retention on a fake clock: a device syncs at 40 moments over four months (some in the
# same hour), one of them a snapshot on request (pinned); the server keeps exactly the
# set an independent implementation of the documented rule computes, `snapshots` names
# the tiers, and GC then reclaims what only expired snapshots held while every kept one
# restores byte for byte.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"
mkdir -p "$src/etc"
cat >"$TEST_TMP/policy.json" <<'JSON'
{"retention": {"last": 2, "hourly": 3, "daily": 4, "weekly": 3, "monthly": 3}}
JSON
expect_exit 0 mirage policy set thin --file "$TEST_TMP/policy.json" --output json
expect_contains "$OUT" '"monthly":3'
expect_contains "$OUT" '"unprotected"'   # defaults filled in
# The moments: every 2-3 days across four months, a burst of four in one hour, and
# two more in the last day.
python3 - >"$TEST_TMP/times" <<'PY'
import datetime as dt
t = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone.utc)
out = []
for i in range(30):
    out.append(t)
    t += dt.timedelta(days=2 + i % 2, hours=i % 5)
burst = out[-1] + dt.timedelta(days=1)
out += [burst + dt.timedelta(minutes=m) for m in (1, 10, 20, 59)]
out += [burst + dt.timedelta(hours=h) for h in (2, 3, 5, 7, 9, 20)]
for x in out: print(x.strftime("%Y-%m-%dT%H:%M:%SZ"))
PY
[ "$(wc -l <"$TEST_TMP/times")" = 40 ] || fail "expected 40 moments"
n=0
pinned_at=""
while read -r when; do
  n=$((n + 1))
  echo "state at $when" >"$src/etc/moment"
  head -c 20000 /dev/urandom >"$src/etc/unique.bin"   # data only this snapshot holds
  if [ "$n" = 1 ]; then
    MIRAGE_TEST_NOW=$when centralize_accepted "$src" dev-ret >/dev/null
    MIRAGE_TEST_NOW=$when mirage policy assign thin --device dev-ret --output json >/dev/null
    continue
  fi
  if [ "$n" = 7 ]; then
    # A snapshot on request: pinned, kept whatever the tiers say.
    MIRAGE_TEST_NOW=$when mirage-centralize request --device dev-ret --reason audit --output json >/dev/null
    pinned_at=$when
  fi
  MIRAGE_TEST_NOW=$when mirage-centralize --root "$src" --device-id dev-ret --output json >"$TEST_TMP/sync.json" ||
    fail "sync at $when failed"
done <"$TEST_TMP/times"
expect_exit 0 mirage-restore snapshots --device dev-ret --output json
echo "$OUT" >"$TEST_TMP/snaps.json"
python3 - "$TEST_TMP/times" "$TEST_TMP/snaps.json" "$pinned_at" <<'PY'
import datetime as dt, json, sys
times = [dt.datetime.strptime(l.strip(), "%Y-%m-%dT%H:%M:%SZ") for l in open(sys.argv[1])]
snaps = json.load(open(sys.argv[2]))["snapshots"]
pinned = dt.datetime.strptime(sys.argv[3], "%Y-%m-%dT%H:%M:%SZ")
# The rule as documented (mirage(1)), written independently: newest first, each tier
# keeps the newest snapshot of each of its N most recent periods holding one.
rule = {"last": 2, "hourly": 3, "daily": 4, "weekly": 3, "monthly": 3}
period = {"last": lambda t: t, "hourly": lambda t: (t.date(), t.hour), "daily": lambda t: t.date(),
          "weekly": lambda t: t.isocalendar()[:2], "monthly": lambda t: (t.year, t.month)}
newest_first = sorted(times, reverse=True)
expect = {}
for tier, n in rule.items():
    seen = []
    for t in newest_first:
        p = period[tier](t)
        if p in seen: continue
        if len(seen) == n: break
        seen.append(p)
        expect.setdefault(t, []).append(tier)
expect.setdefault(pinned, []).append("pinned")
got = {dt.datetime.strptime(s["time"], "%Y-%m-%dT%H:%M:%SZ"): s["kept_by"] for s in snaps}
if set(got) != set(expect):
    print("kept:", sorted(str(t) for t in got), "\nexpected:", sorted(str(t) for t in expect)); sys.exit(1)
for t, tiers in expect.items():
    if sorted(got[t]) != sorted(tiers):
        print("tiers of", t, got[t], "expected", tiers); sys.exit(1)
pin = [s for s in snaps if s["pinned"]]
if len(pin) != 1 or pin[0]["time"] != sys.argv[3]: print("pinned:", pin); sys.exit(1)
print(len(got), "kept of", len(times))
PY
[ $? = 0 ] || fail "retention kept the wrong set"
expect_exit 0 mirage events --device dev-ret --type snapshot.expired
expect_contains "$OUT" '"snapshots"'
expect_exit 0 mirage events --type audit
expect_contains "$OUT" '"method":"policy.assign"'
expect_contains "$OUT" '"method":"snapshot.request"'
# GC: what only expired snapshots held goes; every kept snapshot restores exactly.
last=$(tail -1 "$TEST_TMP/times")
expect_exit 0 env MIRAGE_TEST_NOW="$last" mirage gc --dry-run --grace 0s --output json
dry=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["would_delete"])' "$OUT")
[ "$dry" -gt 0 ] || fail "gc --dry-run found nothing to delete: $OUT"
expect_exit 0 env MIRAGE_TEST_NOW="$last" mirage gc --grace 0s --output json
python3 - "$OUT" "$dry" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["deleted"] == int(sys.argv[2]), r
assert r["unreferenced"] == r["deleted"], r
PY
expect_exit 0 env MIRAGE_TEST_NOW="$last" mirage gc --dry-run --grace 0s --output json
expect_contains "$OUT" '"would_delete":0'
expect_exit 0 mirage check --read-data --output json
for id in $(python3 -c 'import json,sys; [print(s["snapshot_id"]) for s in json.load(open(sys.argv[1]))["snapshots"]]' "$TEST_TMP/snaps.json"); do
  rm -rf "$TEST_TMP/back"
  expect_exit 0 mirage-restore --device dev-ret --snapshot "$id" --path /etc --to "$TEST_TMP/back" --output json
  when=$(python3 -c 'import json,sys; print([s["time"] for s in json.load(open(sys.argv[1]))["snapshots"] if s["snapshot_id"]==sys.argv[2]][0])' "$TEST_TMP/snaps.json" "$id")
  [ "$(cat "$TEST_TMP/back/etc/moment")" = "state at $when" ] || fail "snapshot $id restored the wrong state"
done
echo ok

#!/usr/bin/env bash
# What a new admin met following the README on the embedded store: events --since takes
# the times --snapshot and find --newer take (yesterday, 2h) and names the flag of one it
# does not; policy set with --output text prints the policy as text, not JSON; a sync's
# text gives its time as people read it ("2.6 s", not "2.59813 s"); diff given one
# snapshot then a path says so.
source "$(dirname "$0")/lib.sh"
T=$TEST_TMP

mirage-serverd init >/dev/null
mkdir -p "$T/ep/etc" "$T/ep/home/u"
printf 'pc-ana\n' >"$T/ep/etc/hostname"
printf 'hello\n' >"$T/ep/home/u/a.txt"
expect_exit 5 mirage-centralize --root "$T/ep" --device-id pc-ana --output text
expect_exit 0 mirage-centralize accept pc-ana --output text
expect_exit 0 mirage-centralize --root "$T/ep" --device-id pc-ana --output text --progress none
# "sent 1.2 KiB in 0.3 s": one decimal under a minute.
grep -Eq ', sent [0-9.]+ [KMG]?i?B in [0-9]+\.[0-9] s$' <<<"$OUT" || fail "a sync's time is not as people read it: $OUT"

# diff given one snapshot and a path: the path is named as one, not looked up as a snapshot.
expect_exit 2 mirage-restore diff --device pc-ana latest /etc --output text
expect_contains "$ERR" "/etc is a path"
expect_exit 0 mirage-restore diff --device pc-ana latest latest /etc --output text

# events --since: a relative time (as --snapshot takes it) finds today's events.
for since in yesterday today 2h 1w; do
  expect_exit 0 mirage events --device pc-ana --since "$since" --output text
  expect_contains "$OUT" "snapshot.created"
done
# A time to come: nothing yet.
expect_exit 0 mirage events --device pc-ana --since 2099-01-01 --output text
[ "$OUT" = "no events" ] || fail "events since 2099: $OUT"
# A malformed one: exit 2, naming the flag and the value.
expect_exit 2 mirage events --since bogus --output text
expect_contains "$ERR" "--since bogus: not a time"

# policy set prints what it set, in text when asked for text.
printf '{"retention": {"last": 5}}\n' >"$T/p.json"
expect_exit 0 mirage policy set kiosks --file "$T/p.json" --output text
case "$OUT" in "{"*) fail "policy set --output text printed JSON: $OUT" ;; esac
expect_contains "$OUT" "policy kiosks"
expect_contains "$OUT" "last: 5"
# JSON stays the same document.
expect_exit 0 mirage policy set kiosks --file "$T/p.json" --output json
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["name"]=="kiosks" and d["policy"]["retention"]["last"]==5, d' "$OUT" ||
  fail "policy set JSON: $OUT"
echo OK

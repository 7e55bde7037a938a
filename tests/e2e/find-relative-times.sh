#!/usr/bin/env bash
# mirage-restore find --newer/--older take what --snapshot takes, on a fake clock: a
# date or time, now, today, yesterday (the whole UTC day) and an age (2h, 3d, 1w);
# anything else is a usage error (2).
source "$(dirname "$0")/lib.sh"
need python3
mkdir -p "$TEST_TMP/t"
for f in old recent today; do echo "$f" >"$TEST_TMP/t/$f.txt"; done
touch -d '2026-11-20 12:00:00Z' "$TEST_TMP/t/old.txt"
touch -d '2026-11-25 10:00:00Z' "$TEST_TMP/t/recent.txt"
touch -d '2026-11-26 08:00:00Z' "$TEST_TMP/t/today.txt"
centralize_accepted "$TEST_TMP/t" dev-t >/dev/null
export MIRAGE_TEST_NOW=2026-11-26T09:00:00Z
# found FLAGS... WANT: the names find '*.txt' FLAGS lists, sorted, space-separated.
found() {
  local want=${*: -1}
  expect_exit 0 mirage-restore find --device dev-t '*.txt' "${@:1:$#-1}" --output json
  got=$(python3 -c 'import json,sys; print(" ".join(sorted(json.loads(l)["path"].strip("/") for l in sys.argv[1].splitlines())))' "$OUT")
  [ "$got" = "$want" ] || fail "find ${*:1:$#-1}: got '$got', want '$want'"
}
found --newer 2h today.txt
found --newer today today.txt
found --newer yesterday 'recent.txt today.txt'
found --newer 1w 'old.txt recent.txt today.txt'
found --older 3d old.txt
found --older 1d old.txt
found --older yesterday 'old.txt recent.txt'
found --newer 2026-11-25 --older yesterday recent.txt
found --newer '2026-11-25 10:00' --older '2026-11-25 10:00' recent.txt
found --newer now ''
for bad in yesterdayish 2x 'last week' 2026-13-01; do
  expect_exit 2 mirage-restore find --device dev-t x --newer "$bad"
  expect_contains "$ERR" "--newer $bad: not a time"
done
echo "find-relative-times: ok"

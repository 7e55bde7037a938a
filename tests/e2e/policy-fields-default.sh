#!/usr/bin/env bash
# A policy document that leaves fields out (the README's retention-only example) keeps
# their defaults: /tmp, /var/cache, /proc ... stay unprotected and /home stays the user
# area. An explicit empty list is kept empty.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"
mkdir -p "$src/etc" "$src/tmp" "$src/var/cache/apt" "$src/proc/1" "$src/home/u"
echo conf >"$src/etc/app.conf"; echo junk >"$src/tmp/x"; echo deb >"$src/var/cache/apt/a.deb"
echo stat >"$src/proc/1/status"; echo doc >"$src/home/u/doc"
cat >"$TEST_TMP/retention.json" <<'JSON'
{"retention": {"last": 24, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12}}
JSON
expect_exit 0 mirage policy set keep24 --file "$TEST_TMP/retention.json" --output json
expect_exit 0 mirage policy show keep24 --output json
python3 -c '
import json, sys
p = json.loads(sys.argv[1]).get("policy", json.loads(sys.argv[1]))
for r in ("/proc", "/sys", "/dev", "/tmp", "/var/cache"): assert r in p["unprotected"], (r, p)
assert "/home" in p["user_area"], p
assert p["retention"]["daily"] == 7, p' "$OUT" || fail "left-out fields did not take their defaults: $OUT"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-ret24
expect_exit 0 mirage-centralize accept dev-ret24 --policy keep24 --output json
expect_exit 0 mirage-centralize --root "$src" --device-id dev-ret24 --output json
mirage-restore --device dev-ret24 --path / --to "$TEST_TMP/back" >/dev/null
[ -f "$TEST_TMP/back/etc/app.conf" ] || fail "protected file missing"
[ -f "$TEST_TMP/back/home/u/doc" ] || fail "user file missing"
for f in tmp/x var/cache/apt/a.deb proc/1/status; do
  [ ! -e "$TEST_TMP/back/$f" ] || fail "/$f was uploaded under a retention-only policy"
done
[ -d "$TEST_TMP/back/tmp" ] || fail "the unprotected /tmp is not kept as an empty directory"
# An empty list given stays empty.
echo '{"unprotected": []}' >"$TEST_TMP/none.json"
expect_exit 0 mirage policy set none --file "$TEST_TMP/none.json"
expect_exit 0 mirage policy show none --output json
python3 -c '
import json, sys
p = json.loads(sys.argv[1]).get("policy", json.loads(sys.argv[1]))
assert p["unprotected"] == [], p
assert "/home" in p["user_area"], p' "$OUT" || fail "an explicit empty list was not kept: $OUT"
echo ok

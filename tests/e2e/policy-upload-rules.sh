#!/usr/bin/env bash
# Upload policies: a device accepted with a named policy uploads by its rules
# (unprotected paths left out, exceptions kept, unprotected directories kept empty);
# malformed policies are refused with the field named.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"
mkdir -p "$src/etc" "$src/scratch/keep" "$src/scratch/junk" "$src/home/u"
echo conf >"$src/etc/app.conf"
echo tmp >"$src/scratch/junk/a"; echo precious >"$src/scratch/keep/b"
echo x >"$src/home/u/notes.swp"; echo doc >"$src/home/u/doc.txt"
cat >"$TEST_TMP/policy.json" <<'JSON'
{"version": 1, "unprotected": ["/scratch", "*.swp"], "exceptions": ["/scratch/keep"], "user_area": ["/home"]}
JSON
expect_exit 0 mirage policy set lab --file "$TEST_TMP/policy.json" --output json
expect_exit 0 mirage policy show lab --output json
expect_contains "$OUT" '"/scratch/keep"'
expect_exit 3 mirage-centralize accept nobody --policy lab
expect_exit 5 mirage-centralize --root "$src" --device-id dev-pol
expect_exit 3 mirage-centralize accept dev-pol --policy no-such-policy
expect_exit 0 mirage-centralize accept dev-pol --policy lab --output json
expect_contains "$OUT" '"policy":"lab"'
expect_exit 0 mirage-centralize --root "$src" --device-id dev-pol --output json
mirage-restore --device dev-pol --path / --to "$TEST_TMP/back" >/dev/null
[ -f "$TEST_TMP/back/etc/app.conf" ] || fail "protected file missing"
[ -f "$TEST_TMP/back/scratch/keep/b" ] || fail "exception not uploaded"
[ ! -e "$TEST_TMP/back/scratch/junk/a" ] || fail "unprotected file uploaded"
[ -d "$TEST_TMP/back/scratch" ] || fail "unprotected directory not kept"
[ ! -e "$TEST_TMP/back/home/u/notes.swp" ] || fail "bare-name rule ignored"
[ -f "$TEST_TMP/back/home/u/doc.txt" ] || fail "user file missing"
echo '{"unprotected": "/tmp"}' >"$TEST_TMP/bad.json"
expect_exit 2 mirage policy set bad --file "$TEST_TMP/bad.json"
expect_contains "$ERR" "unprotected"
echo '{"version": 1, "surprise": []}' >"$TEST_TMP/bad2.json"
expect_exit 2 mirage policy set bad --file "$TEST_TMP/bad2.json"
expect_contains "$ERR" "surprise"
echo ok

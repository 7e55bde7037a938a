#!/usr/bin/env bash
# Every "FILE or -" JSON argument (--input of every tool, mirage policy set --file,
# mirage-capture --rules) is read by one reader: a missing file is not_found (exit 3)
# naming it; text that is not JSON is a usage error (exit 2) naming the argument, the
# file and the position; - reads standard input.
source "$(dirname "$0")/lib.sh"
printf '{\n  "unprotected": [tru\n}\n' >"$TEST_TMP/bad.json"
printf '{"device":\n' >"$TEST_TMP/cut.json"

expect_exit 3 mirage policy set p --file "$TEST_TMP/missing.json"
expect_contains "$ERR" "$TEST_TMP/missing.json"
expect_exit 2 mirage policy set p --file "$TEST_TMP/bad.json" --output json
expect_contains "$ERR" '"code":"usage"'
expect_contains "$ERR" "--file $TEST_TMP/bad.json: not valid JSON at line 2, column "
expect_exit 2 mirage policy set p --file - <"$TEST_TMP/bad.json"
expect_contains "$ERR" "--file - (stdin): not valid JSON at line 2, column "
echo '{"unprotected": ["/tmp/**"]}' | mirage policy set p --file - --output json >/dev/null

expect_exit 3 mirage-restore --input "$TEST_TMP/missing.json"
expect_contains "$ERR" "$TEST_TMP/missing.json"
expect_exit 2 mirage-restore --input "$TEST_TMP/cut.json"
expect_contains "$ERR" "--input $TEST_TMP/cut.json: not valid JSON at line 2, column 1 (byte 12)"

mkdir -p "$TEST_TMP/root"
expect_exit 3 mirage-capture base --name b --root "$TEST_TMP/root" --rules "$TEST_TMP/missing.json"
expect_contains "$ERR" "$TEST_TMP/missing.json"
expect_exit 2 mirage-capture base --name b --root "$TEST_TMP/root" --rules - <"$TEST_TMP/bad.json"
expect_contains "$ERR" "--rules - (stdin): not valid JSON at line 2, column "
echo ok

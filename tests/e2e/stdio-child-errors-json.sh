#!/usr/bin/env bash
# What the local server (mirage-serverd --stdio, spawned for local:DIR) writes to its
# stderr reaches the user through the client: in JSON mode (--output json) stderr carries
# only JSON lines (its warnings as {"warning":...}, its last words inside the one
# {"error":...}); in text mode they read as the client's warnings.
source "$(dirname "$0")/lib.sh"
need python3
real=$(command -v mirage-serverd)
mkdir -p "$TEST_TMP/bin"
# only_json TEXT: every line of TEXT is a JSON object.
only_json() {
  python3 -c 'import json,sys; [json.loads(l) for l in sys.argv[1].splitlines()]' "$1" || fail "stderr not only JSON: $1"
}
mirage-serverd init --data "$MIRAGE_HOME" >/dev/null  # the store exists (a read makes none)
expect_exit 0 mirage device list --output json

# A server that dies with a plain message (a crash, a loader): exit 75, its message in the error.
printf '#!/bin/sh\necho "loader: cannot open libfoo.so" >&2\nexit 127\n' >"$TEST_TMP/bin/dies"
chmod +x "$TEST_TMP/bin/dies"
expect_exit 75 env MIRAGE_SERVERD="$TEST_TMP/bin/dies" mirage device list --output json
only_json "$ERR"
expect_contains "$ERR" '"error":{"code":"unavailable"'
expect_contains "$ERR" 'cannot open libfoo.so'
[ "$(python3 -c 'import json,sys; print(sum("error" in json.loads(l) for l in sys.argv[1].splitlines()))' "$ERR")" = 1 ] ||
  fail "not one error object: $ERR"
expect_exit 75 env MIRAGE_SERVERD="$TEST_TMP/bin/dies" mirage device list --output text
expect_contains "$ERR" "mirage: error: local server for $MIRAGE_HOME exited"
expect_contains "$ERR" "cannot open libfoo.so"

# A server that dies in the middle of its reply (killed mid-frame): still "exited", 75.
printf '#!/bin/sh\nread -r request\nprintf "{\\"id\\":1,"\necho "killed mid-reply" >&2\nexit 137\n' >"$TEST_TMP/bin/half"
chmod +x "$TEST_TMP/bin/half"
expect_exit 75 env MIRAGE_SERVERD="$TEST_TMP/bin/half" mirage device list --output text
expect_contains "$ERR" "mirage: error: local server for $MIRAGE_HOME exited"
expect_contains "$ERR" "killed mid-reply"
expect_contains "$ERR" "mid-frame"

# The real server refusing its arguments: its own JSON error, inside the client's.
printf '#!/bin/sh\nexec %s --no-such-flag "$@"\n' "$real" >"$TEST_TMP/bin/refuses"
chmod +x "$TEST_TMP/bin/refuses"
expect_exit 75 env MIRAGE_SERVERD="$TEST_TMP/bin/refuses" mirage-restore snapshots --device x --output json
only_json "$ERR"
expect_contains "$ERR" 'no-such-flag'

# A server that warns and then serves: the warning as a JSON line, the command works.
printf '#!/bin/sh\necho "{\\"warning\\":{\\"message\\":\\"volume 1 is nearly full\\"}}" >&2\necho "a plain note" >&2\nexec %s "$@"\n' \
  "$real" >"$TEST_TMP/bin/warns"
chmod +x "$TEST_TMP/bin/warns"
expect_exit 0 env MIRAGE_SERVERD="$TEST_TMP/bin/warns" mirage device list --output json
only_json "$ERR"
expect_contains "$ERR" '{"warning":{"message":"mirage-serverd: volume 1 is nearly full"}}'
expect_contains "$ERR" '{"warning":{"message":"mirage-serverd: a plain note"}}'
expect_exit 0 env MIRAGE_SERVERD="$TEST_TMP/bin/warns" mirage device list --output text
expect_contains "$ERR" "mirage: warning: mirage-serverd: volume 1 is nearly full"
echo "stdio-child-errors-json: ok"

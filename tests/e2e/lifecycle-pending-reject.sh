#!/usr/bin/env bash
# A new device is pending (exit 5, JSON says so) until accepted; a rejected device
# cannot upload (exit 4); bad input gets clear errors with the documented exit codes.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"; mkdir -p "$src/etc"; echo one >"$src/etc/a"
echo "0123456789abcdef0123456789abcdef" >"$src/etc/machine-id"

# Device id defaults to ROOT/etc/machine-id.
expect_exit 5 mirage-centralize --root "$src" --output json
expect_contains "$OUT" '"device_id":"0123456789abcdef0123456789abcdef"'
expect_contains "$OUT" '"state":"pending"'
expect_exit 0 mirage-centralize pending --output json
expect_contains "$OUT" '0123456789abcdef0123456789abcdef'
expect_exit 3 mirage-restore snapshots --device nobody --output json
expect_contains "$ERR" '"code":"not_found"'

expect_exit 0 mirage-centralize reject 0123456789abcdef0123456789abcdef --output json
expect_contains "$OUT" '"state":"rejected"'
expect_exit 4 mirage-centralize --root "$src" --output json
expect_contains "$ERR" 'rejected'

# Accepting later lets it upload.
expect_exit 0 mirage-centralize accept 0123456789abcdef0123456789abcdef --output json
expect_exit 0 mirage-centralize --root "$src" --output json
expect_contains "$OUT" '"snapshot_id"'

# Usage errors: exit 2, never CLI11's own codes.
expect_exit 2 mirage-centralize --no-such-flag
expect_exit 2 mirage-restore --device x --path / --to "$TEST_TMP/r" --snapshot
expect_exit 2 mirage-centralize --root "$src" --device-id 'bad id/..'
expect_contains "$ERR" "device id"
expect_exit 2 mirage-restore --device 0123456789abcdef0123456789abcdef --path /../etc --to "$TEST_TMP/r"
expect_contains "$ERR" "invalid component"
expect_exit 3 mirage-restore --device 0123456789abcdef0123456789abcdef --path /etc/missing --to "$TEST_TMP/r"
expect_exit 3 mirage-restore --device 0123456789abcdef0123456789abcdef --snapshot 1999-01-01 --path / --to "$TEST_TMP/r"

# --input: a JSON object of flags, e.g. from another tool's output; unknown fields are refused.
echo '{"device": "0123456789abcdef0123456789abcdef", "path": ["/etc/a"], "to": "'"$TEST_TMP/in"'"}' >"$TEST_TMP/req.json"
expect_exit 0 mirage-restore --input "$TEST_TMP/req.json" --output json
cmp "$src/etc/a" "$TEST_TMP/in/etc/a"
expect_exit 0 bash -c "mirage-restore snapshots --device 0123456789abcdef0123456789abcdef --output json | python3 -c 'import json,sys; s=json.load(sys.stdin)[\"snapshots\"][-1]; print(json.dumps({\"device\": s[\"device_id\"], \"snapshot\": s[\"snapshot_id\"], \"path\": [\"/etc\"], \"to\": \"$TEST_TMP/piped\"}))' | mirage-restore --input - --output json"
cmp "$src/etc/a" "$TEST_TMP/piped/etc/a"
echo '{"device": "x", "bogus": 1}' >"$TEST_TMP/bad.json"
expect_exit 2 mirage-restore --input "$TEST_TMP/bad.json"
echo '{"device": ' >"$TEST_TMP/broken.json"
expect_exit 2 mirage-restore --input "$TEST_TMP/broken.json" --output json
expect_contains "$ERR" "not valid JSON"

# A restore target that holds a symlink where a directory is expected is refused, not followed.
mkdir -p "$TEST_TMP/evil" "$TEST_TMP/outside"
ln -s "$TEST_TMP/outside" "$TEST_TMP/evil/etc"
expect_exit 5 mirage-restore --device 0123456789abcdef0123456789abcdef --path /etc --to "$TEST_TMP/evil"
expect_contains "$ERR" "symlink"
[ -z "$(ls -A "$TEST_TMP/outside")" ] || fail "restore wrote through a symlink"
echo ok

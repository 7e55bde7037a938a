#!/usr/bin/env bash
# The daily tools attacked as an outsider would: a dump or `--to -` into a pipe whose
# reader left (| head -c1) says so (exit 1, JSON only in JSON mode); a NUL byte through
# --input is refused (2), not cut short into another path; a huge or overlong argument
# is refused with a bounded message; control bytes in a spec never reach the terminal;
# another device's snapshot id is not found on this one (3: ls, dump, diff, forget
# --device) and its data never printed; symlinks in the target are not followed (5), and
# one at a file's place is replaced, not written through; --to an existing file is 2 and
# the file is left; gc --grace below 0 is 2.
source "$(dirname "$0")/lib.sh"
need python3
only_json() {
  python3 -c 'import json,sys; [json.loads(l) for l in sys.argv[1].splitlines()]' "$1" || fail "stderr not only JSON: $1"
}
mkdir -p "$TEST_TMP/src/dir" "$TEST_TMP/other"
head -c 3000000 /dev/urandom >"$TEST_TMP/src/big.bin"
echo hello >"$TEST_TMP/src/dir/a.txt"
echo 'the other device' >"$TEST_TMP/other/secret.txt"
centralize_accepted "$TEST_TMP/src" dev-k >/dev/null
centralize_accepted "$TEST_TMP/other" dev-o >/dev/null
snap() { mirage-restore snapshots --device "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][-1]["snapshot_id"])'; }
k=$(snap dev-k); o=$(snap dev-o)

# A reader that leaves: a file, a directory as tar, --to -.
for args in "dump --device dev-k /big.bin" "dump --device dev-k /" "--device dev-k --path /big.bin --to -"; do
  set +e +o pipefail
  mirage-restore $args --output json 2>"$TEST_TMP/err" | head -c1 >/dev/null
  rc=${PIPESTATUS[0]}
  set -e -o pipefail
  err=$(cat "$TEST_TMP/err")
  [ "$rc" = 1 ] || fail "$args | head -c1: exit $rc: $err"
  only_json "$err"
  expect_contains "$err" "standard output was closed by its reader (broken pipe)"
done

# NUL through --input: refused, and nothing made where the path would be cut.
expect_exit 2 mirage-restore --input - <<<"{\"device\": \"dev-k\", \"path\": [\"/dir\"], \"to\": \"$TEST_TMP/cut\\u0000/x\"}"
expect_contains "$ERR" "field 'to' contains a NUL byte"
[ ! -e "$TEST_TMP/cut" ] || fail "a NUL in --to restored into the path before it"
expect_exit 2 mirage-restore --input - <<<'{"device": "dev-k", "path": ["/dir\u0000x"], "to": "/nonexistent"}'

# Overlong and huge arguments: refused, the message bounded.
long=$(head -c 5000 /dev/zero | tr '\0' a)
expect_exit 2 mirage-restore ls --device dev-k "/$long" --output json
expect_contains "$ERR" "a name has at most 255 bytes"
[ "${#ERR}" -lt 400 ] || fail "a 5000-byte name echoed back: ${#ERR} bytes"
huge=$(head -c 100000 /dev/zero | tr '\0' x)
for cmd in "mirage stats --device" "mirage-restore ls --device" "mirage device delete" "mirage snapshot forget --device"; do
  set +e; $cmd "$huge" --output json >/dev/null 2>"$TEST_TMP/err"; rc=$?; set -e
  err=$(cat "$TEST_TMP/err")
  [ "$rc" = 2 ] || [ "$rc" = 3 ] || fail "$cmd HUGE: exit $rc: ${err:0:300}"
  [ "${#err}" -lt 400 ] || fail "$cmd HUGE: a 100000-byte argument echoed back (${#err} bytes)"
done
expect_exit 3 mirage-restore ls --device dev-k --snapshot "$(printf 'a\033[31mb\nc')" / --output text
case $ERR in *$'\033'*) fail "an escape byte reached the terminal: $ERR" ;; esac
expect_contains "$ERR" 'no snapshot a?[31mb?c'

# Another device's snapshot on this one: not found, its data never shown.
expect_exit 3 mirage-restore ls --device dev-k --snapshot "$o" /
expect_exit 3 mirage-restore dump --device dev-k --snapshot "$o" /secret.txt
case $OUT in *'other device'*) fail "dumped another device's file" ;; esac
expect_exit 3 mirage-restore diff --device dev-k "$k" "$o"
expect_exit 3 mirage snapshot forget --device dev-k "$o" --output json
expect_exit 0 mirage-restore snapshots --device dev-o --output json
expect_contains "$OUT" "$o"  # still there

# Symlinks in the target: a directory's place is refused, a file's is replaced.
mkdir -p "$TEST_TMP/outside" "$TEST_TMP/t1" "$TEST_TMP/t2/dir"
ln -s "$TEST_TMP/outside" "$TEST_TMP/t1/dir"
expect_exit 5 mirage-restore --device dev-k --path /dir --to "$TEST_TMP/t1"
[ -z "$(ls "$TEST_TMP/outside")" ] || fail "restored through a symlinked directory"
echo keep >"$TEST_TMP/outside/victim"
ln -s "$TEST_TMP/outside/victim" "$TEST_TMP/t2/dir/a.txt"
expect_exit 0 mirage-restore --device dev-k --path /dir --to "$TEST_TMP/t2" --output json
[ "$(cat "$TEST_TMP/outside/victim")" = keep ] || fail "wrote through a symlink at a file's place"
[ ! -L "$TEST_TMP/t2/dir/a.txt" ] && [ "$(cat "$TEST_TMP/t2/dir/a.txt")" = hello ] || fail "the symlink was not replaced"

# --to an existing file, gc --grace below 0.
echo precious >"$TEST_TMP/existing"
expect_exit 2 mirage-restore --device dev-k --path /dir --to "$TEST_TMP/existing"
[ "$(cat "$TEST_TMP/existing")" = precious ] || fail "--to a file changed it"
expect_exit 2 mirage gc --dry-run --grace -5s
echo "attack-daily-tools: ok"

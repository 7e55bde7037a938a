#!/usr/bin/env bash
# A partial restore (--path subsets) reports its total, read from the snapshot's trees:
# the JSON progress lines (--progress json) carry total_bytes, a hardlink group counted
# once and each copy of a directory counted (copies share a tree); the last line's
# bytes_done equals it, for --path / too (the snapshot's stats count a hardlink at each
# name). Text progress on a pipe says "X of Y".
source "$(dirname "$0")/lib.sh"
need python3
src="$TEST_TMP/src"
mkdir -p "$src/a/sub" "$src/a/copy1" "$src/b"
head -c 300000 /dev/urandom >"$src/a/one.bin"
ln "$src/a/one.bin" "$src/a/sub/hardlink"
head -c 200000 /dev/urandom >"$src/a/sub/two.bin"
head -c 1000 /dev/urandom >"$src/a/copy1/small.bin"
cp -a "$src/a/copy1" "$src/a/copy2"
head -c 100000 /dev/urandom >"$src/b/three.bin"
centralize_accepted "$src" dev-p >/dev/null

# check_progress STDERR WANT: every line a progress object, the last with total_bytes
# and bytes_done WANT.
check_progress() {
  python3 - "$1" "$2" <<'PY' || fail "progress lines: $1"
import json, sys
lines = [json.loads(l) for l in sys.argv[1].splitlines()]
want = int(sys.argv[2])
assert lines, "no progress lines"
assert all(l["type"] == "progress" and l["action"] == "restore" for l in lines), lines
last = lines[-1]
assert last["total_bytes"] == want and last["bytes_done"] == want, (last, want)
assert last["percent_done"] == 1.0, last
PY
}
expect_exit 0 mirage-restore --device dev-p --path /a --to "$TEST_TMP/r1" --progress json --output json
check_progress "$ERR" 502000
expect_exit 0 mirage-restore --device dev-p --path /a/sub --path /b --to "$TEST_TMP/r2" --progress json --output json
check_progress "$ERR" 600000  # the hardlink is the first of its group here
expect_exit 0 mirage-restore --device dev-p --path /b/three.bin --to "$TEST_TMP/r3" --progress json --output json
check_progress "$ERR" 100000
expect_exit 0 mirage-restore --device dev-p --path / --to "$TEST_TMP/r4" --progress json --output json
check_progress "$ERR" 602000
expect_exit 0 mirage-restore --device dev-p --path /a --to "$TEST_TMP/r5" --progress text --output json
expect_contains "$ERR" " of 490.2 KiB ("
# A missing path is refused before anything is made, as without progress.
expect_exit 3 mirage-restore --device dev-p --path /a/nothing --to "$TEST_TMP/r6" --progress json --output json
[ ! -e "$TEST_TMP/r6" ] || fail "a refused restore made its target"
echo "restore-progress-total: ok"

#!/usr/bin/env bash
# One directory of 30,000 files with long names: its tree is split into pieces (over
# 8,192 entries), which the server verifies, GC keeps, check reads and restore joins.
# An edit there sends one piece and the index, not the whole directory again.
source "$(dirname "$0")/lib.sh"
need python3
src="$TEST_TMP/src"
python3 - "$src" <<'PY'
import os, sys
big = os.path.join(sys.argv[1], "big")
os.makedirs(big)
for i in range(30000):
    name = "file-%06d-" % i + "x" * 180
    with open(os.path.join(big, name), "wb") as fh:
        if i % 1000 == 0:
            fh.write(b"content %d\n" % i)
with open(os.path.join(sys.argv[1], "top"), "w") as fh:
    fh.write("top\n")
PY
centralize_accepted "$src" huge >"$TEST_TMP/first.json"
first_trees=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["trees_new"])' "$TEST_TMP/first.json")
# The root, big's index and at least four pieces of it.
[ "$first_trees" -ge 6 ] || fail "expected big/ split into pieces, got $first_trees tree objects"

# One file in big/ changes: one piece, the index and the root are new.
echo changed >"$src/big/file-012345-$(printf 'x%.0s' $(seq 180))"
mirage-centralize --root "$src" --device-id huge --output json >"$TEST_TMP/second.json"
second_trees=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["trees_new"])' "$TEST_TMP/second.json")
[ "$second_trees" = 3 ] || fail "an edit in a split directory sent $second_trees tree objects, expected 3"

# GC keeps the pieces of both snapshots; check reads them all.
mirage gc --output json >/dev/null
mirage check --read-data --output json >"$TEST_TMP/check.json" || fail "check after gc: $(cat "$TEST_TMP/check.json")"
mirage-restore --device huge --path / --to "$TEST_TMP/back" >/dev/null
expect_same_tree "$src" "$TEST_TMP/back"
# One file found through the split directory.
mirage-restore --device huge --path "/big/file-029000-$(printf 'x%.0s' $(seq 180))" --to "$TEST_TMP/one" >/dev/null
cmp "$src/big/file-029000-$(printf 'x%.0s' $(seq 180))" "$TEST_TMP/one/big/file-029000-$(printf 'x%.0s' $(seq 180))" ||
  fail "single file restored through a split directory differs"
echo ok

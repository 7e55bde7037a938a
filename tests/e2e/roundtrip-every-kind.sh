#!/usr/bin/env bash
# Every kind of entry survives centralize + restore byte for byte and metadata for
# metadata (rsync -aHAXS parity), for the whole snapshot, a subtree and one file.
source "$(dirname "$0")/lib.sh"
need python3
src="$TEST_TMP/src"
make_every_kind "$src"

centralize_accepted "$src" dev-every >/dev/null
expect_exit 0 mirage-restore --device dev-every --path / --to "$TEST_TMP/all" --output json
expect_contains "$OUT" '"snapshot_id"'
expect_same_tree "$src" "$TEST_TMP/all"

# A subtree lands at its own path below --to.
mirage-restore --device dev-every --path /dir --to "$TEST_TMP/part" >/dev/null
expect_same_tree "$src/dir" "$TEST_TMP/part/dir"
[ ! -e "$TEST_TMP/part/hard2" ] || fail "subtree restore wrote outside the subtree"

# One file, with an odd name.
name=$(printf 'caf\xe9')
mirage-restore --device dev-every --path "/$name" --to "$TEST_TMP/one" >/dev/null
cmp "$src/$name" "$TEST_TMP/one/$name" || fail "single file differs"

# Sparse files keep their holes.
blocks=$(stat -c %b "$TEST_TMP/all/sparse")
[ "$blocks" -lt 1000 ] || fail "sparse file restored dense ($blocks blocks)"

# A second sync after changes; both snapshots restore exactly.
cp -a "$src" "$TEST_TMP/src-v1"
printf 'changed\n' >>"$src/dir/text.txt"
rm "$src/name with spaces"
head -c 100000 /dev/urandom >"$src/dir/new.bin"
expect_exit 0 mirage-centralize --root "$src" --device-id dev-every --output json
expect_contains "$OUT" '"files_read":2'
mirage-restore --device dev-every --path / --to "$TEST_TMP/v2" >/dev/null
expect_same_tree "$src" "$TEST_TMP/v2"
first=$(mirage-restore snapshots --device dev-every --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["snapshot_id"])')
mirage-restore --device dev-every --snapshot "$first" --path / --to "$TEST_TMP/v1" >/dev/null
expect_same_tree "$TEST_TMP/src-v1" "$TEST_TMP/v1"

expect_exit 0 mirage check --read-data --output json
expect_contains "$OUT" '"ok":true'
echo "ok"

#!/usr/bin/env bash
# Temporary files a killed restore left (.mirage-restore.*) are removed by the next
# restore into that directory; a restore that meets a missing pack names the files it
# affects, not only the pack.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"; mkdir -p "$src/docs"  # no other directory: its listing would share the data's pack
head -c 500000 /dev/urandom >"$src/docs/big.bin"
echo small >"$src/docs/small.txt"
centralize_accepted "$src" dev-temp >/dev/null

# Planted leftovers, as a kill -9 in the middle of a restore leaves them.
back="$TEST_TMP/back"; mkdir -p "$back/docs"
echo partial >"$back/.mirage-restore.0123456789abcdef"
echo partial >"$back/docs/.mirage-restore.fedcba9876543210"
expect_exit 0 mirage-restore --device dev-temp --path / --to "$back"
[ -z "$(find "$back" -name '.mirage-restore.*')" ] || fail "leftover temporary files: $(find "$back" -name '.mirage-restore.*')"
expect_same_tree "$src" "$back"
# Restoring one file cleans its directory too.
echo partial >"$back/docs/.mirage-restore.00000000aaaaaaaa"
expect_exit 0 mirage-restore --device dev-temp --path /docs/small.txt --to "$back"
[ ! -e "$back/docs/.mirage-restore.00000000aaaaaaaa" ] || fail "leftover temporary file after a one-file restore"
cmp "$src/docs/small.txt" "$back/docs/small.txt"

# A missing pack: the error names the files whose data it held. A second sync puts the
# new trees in a new pack, so the first one holds the old files' data alone.
pack=$(find "$MIRAGE_HOME/volumes" -name '*.pack')
[ "$(echo "$pack" | wc -l)" = 1 ] || fail "expected one pack after the first sync: $pack"
echo new >"$src/docs/new.txt"
mirage-centralize --root "$src" --device-id dev-temp --output json >/dev/null
mv "$pack" "$TEST_TMP/pack.away"
set +e
mirage-restore --device dev-temp --path / --to "$TEST_TMP/r2" --output json >"$TEST_TMP/out" 2>"$TEST_TMP/err"
rc=$?
set -e
ERR=$(cat "$TEST_TMP/err")
[ "$rc" = 6 ] || fail "expected exit 6 (integrity) for a missing pack, got $rc: $ERR"
expect_contains "$ERR" '"code":"integrity"'
expect_contains "$ERR" "$(basename "$pack" .pack)"
expect_contains "$ERR" "files affected: /docs/big.bin, /docs/small.txt (2 in all"
# Had the pack held a directory's listing, that directory is named.
mv "$TEST_TMP/pack.away" "$pack"
newest=$(find "$MIRAGE_HOME/volumes" -name '*.pack' ! -path "$pack")
mv "$newest" "$TEST_TMP/trees.away"
expect_exit 6 mirage-restore --device dev-temp --path /docs --to "$TEST_TMP/r3" --output json
expect_contains "$ERR" "restore / (the directory's listing)"
echo ok

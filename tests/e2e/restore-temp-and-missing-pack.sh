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

# A missing pack: the error names the files whose data it held. A second sync puts its
# new listings in new packs, so the largest pack of the first one holds data alone.
find "$MIRAGE_HOME/volumes" -name '*.pack' | sort >"$TEST_TMP/packs.1"
pack=$(find "$MIRAGE_HOME/volumes" -name '*.pack' -printf '%s %p\n' | sort -rn | head -1 | cut -d' ' -f2)  # big.bin's
echo new >"$src/docs/new.txt"
mirage-centralize --root "$src" --device-id dev-temp --output json >/dev/null
find "$MIRAGE_HOME/volumes" -name '*.pack' | sort >"$TEST_TMP/packs.2"
mv "$pack" "$TEST_TMP/pack.away"
expect_exit 6 mirage-restore --device dev-temp --path / --to "$TEST_TMP/r2" --output json
expect_contains "$ERR" '"code":"integrity"'
expect_contains "$ERR" "$(basename "$pack" .pack)"
expect_contains "$ERR" "files affected: /docs/big.bin"
# A truncated pack: the same.
cp "$TEST_TMP/pack.away" "$pack"
truncate -s $(( $(stat -c %s "$pack") / 3 )) "$pack"
expect_exit 6 mirage-restore --device dev-temp --path / --to "$TEST_TMP/r4" --output json
expect_contains "$ERR" "files affected: /docs/big.bin"
# Had a pack held a directory's listing, that directory is named.
mv "$TEST_TMP/pack.away" "$pack"
mkdir -p "$TEST_TMP/trees.away"
comm -13 "$TEST_TMP/packs.1" "$TEST_TMP/packs.2" | while read -r p; do mv "$p" "$TEST_TMP/trees.away/"; done
expect_exit 6 mirage-restore --device dev-temp --path /docs --to "$TEST_TMP/r3" --output json
expect_contains "$ERR" "restore / (the directory's listing)"
echo ok

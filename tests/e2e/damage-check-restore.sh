#!/usr/bin/env bash
# A flipped byte or a truncated pack is found and named by `mirage check`, and a
# restore that meets corrupt data exits 6 naming the file, leaving no partial file.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"; mkdir -p "$src/docs"
head -c 500000 /dev/urandom >"$src/docs/big.bin"
echo small >"$src/docs/small.txt"
centralize_accepted "$src" dev-damage >/dev/null
expect_exit 0 mirage check --read-data --output json
pack=$(find "$MIRAGE_HOME/volumes" -name '*.pack' -printf '%s %p\n' | sort -rn | head -1 | cut -d' ' -f2)  # the big file's
packname=$(basename "$pack" .pack)
cp "$pack" "$TEST_TMP/pack.orig"

# Flip one byte in the middle of the big file's data.
python3 - "$pack" <<'PY'
import sys
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
data[len(data) // 2] ^= 0x55
open(p, "wb").write(bytes(data))
PY
expect_exit 0 mirage check --output json          # metadata alone cannot see a flipped byte
expect_exit 6 mirage check --read-data --output json
expect_contains "$OUT" '"ok":false'
expect_contains "$OUT" "$packname"
expect_exit 6 mirage-restore --device dev-damage --path /docs/big.bin --to "$TEST_TMP/r1" --output json
expect_contains "$ERR" '/docs/big.bin'
expect_contains "$ERR" '"code":"integrity"'
[ ! -e "$TEST_TMP/r1/docs/big.bin" ] || fail "corrupt file was written"
[ -z "$(find "$TEST_TMP/r1" -name '.mirage-restore.*')" ] || fail "temporary file left behind"
# The undamaged file still restores.
expect_exit 0 mirage-restore --device dev-damage --path /docs/small.txt --to "$TEST_TMP/r2"
cmp "$src/docs/small.txt" "$TEST_TMP/r2/docs/small.txt"

# Truncate the pack.
cp "$TEST_TMP/pack.orig" "$pack"
truncate -s $(( $(stat -c %s "$pack") / 3 )) "$pack"
expect_exit 6 mirage check --output text
expect_contains "$OUT" "pack $packname: truncated"
expect_exit 6 mirage-restore --device dev-damage --path / --to "$TEST_TMP/r3"
expect_contains "$ERR" "truncated"
echo ok

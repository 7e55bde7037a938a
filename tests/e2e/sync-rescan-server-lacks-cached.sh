#!/usr/bin/env bash
# The files cache vouches for chunks a server no longer has (here: a new, empty server
# behind the same endpoint state): the commit is refused as incomplete (the reply's
# error carries reason "incomplete"), and the sync rescans without the cache, sends
# everything again and commits. The snapshot restores to the same tree.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"; mkdir -p "$src/dir"
head -c 300000 /dev/urandom >"$src/dir/random.bin"
printf 'hello\n' >"$src/hello.txt"
state="$TEST_TMP/state"
expect_exit 5 mirage-centralize --root "$src" --device-id dev --state "$state" --output json
mirage-centralize accept dev --output json >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev --state "$state" --output json
[ -s "$state/files.cache" ] || fail "no files cache after the first sync"
# Another server: it has none of the chunks the cache vouches for.
export MIRAGE_HOME="$TEST_TMP/home2"
expect_exit 5 mirage-centralize --root "$src" --device-id dev --state "$state" --output json
mirage-centralize accept dev --output json >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev --state "$state" --output json
expect_contains "$ERR" "incomplete"
expect_contains "$ERR" "rescanning without the files cache"
expect_exit 0 mirage check --read-data
expect_exit 0 mirage-restore --device dev --path / --to "$TEST_TMP/out" --output json
expect_same_tree "$src" "$TEST_TMP/out"
echo ok

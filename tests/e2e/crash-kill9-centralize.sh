#!/usr/bin/env bash
# kill -9 of a centralize (the command with its store in process; in even rounds with its
# store served by a server process, MIRAGE_SERVERD, killed first) at random points, then
# a rerun: `mirage check --read-data` passes and the snapshot is complete.
source "$(dirname "$0")/lib.sh"
need python3
src="$TEST_TMP/src"; mkdir -p "$src"
for i in $(seq 1 40); do head -c $((RANDOM * 20)) /dev/urandom >"$src/file$i"; done
head -c 20000000 /dev/urandom >"$src/large.bin"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-crash
mirage-centralize accept dev-crash >/dev/null
for round in 1 2 3 4 5; do
  serverd=; [ $((round % 2)) = 0 ] && serverd=$(command -v mirage-serverd)
  MIRAGE_SERVERD=$serverd mirage-centralize --root "$src" --device-id dev-crash --output json >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 9))$((RANDOM % 10))"
  [ -z "$serverd" ] || pkill -9 -f "mirage-serverd --stdio --data $MIRAGE_HOME" || true
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  expect_exit 0 mirage check --read-data --output json
  echo "x$round" >>"$src/file1"
done
expect_exit 0 mirage-centralize --root "$src" --device-id dev-crash --output json
expect_exit 0 mirage check --read-data --output json
expect_contains "$OUT" '"ok":true'
mirage-restore --device dev-crash --path / --to "$TEST_TMP/back" >/dev/null
expect_same_tree "$src" "$TEST_TMP/back"
echo ok

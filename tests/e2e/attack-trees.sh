#!/usr/bin/env bash
# Hand-made split directories from an accepted device (its own credential over HTTP):
# nested indexes, repeated and overlapping pieces, lying counts, a piece nobody
# uploaded, MTR1/MTX1 confusion, an index as a file's chunk, a DAG of shared split
# subdirectories. Each bad one is refused with its kind (integrity 422, precondition
# 409) and the server stays up; afterwards check and gc pass, and the device restores
# what was committed.
source "$(dirname "$0")/lib.sh"
need python3
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL"
secret=attack-trees-secret
hash=$(printf %s "$secret" | sha256sum | cut -c1-64)
status=$(curl -s -o "$TEST_TMP/reply" -w '%{http_code}' --data-binary \
  '{"v":1,"id":1,"method":"device.register","params":{"device_id":"evil","credential_hash":"'"$hash"'"}}'$'\n' "$SERVER_URL/v1/rpc")
[ "$status" = 200 ] || fail "register: $status $(cat "$TEST_TMP/reply")"
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept evil >/dev/null
token="mdc_evil.$secret"
attack() { python3 "$MIRAGE_SOURCE/tests/e2e/attack_trees.py" "$SERVER_URL" "$token" evil "$@"; }

attack attacks
kill -0 "$SERVER_PID" || fail "server died"
# One MTR1 object of a million 18-byte entries (it fits in an upload): refused unread;
# decoded, it took ~240 bytes an entry (3,000,000 of them: 726 MiB).
attack wide 65536 >/dev/null
attack wide 1000000
kill -0 "$SERVER_PID" || fail "server died"
if [ -z "${ASAN_OPTIONS:-}${TSAN_OPTIONS:-}" ]; then
  peak_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
  echo "server peak memory: $((peak_kib / 1024)) MiB"
  [ "$peak_kib" -lt $((256 * 1024)) ] || fail "server peak memory $((peak_kib / 1024)) MiB is over 256 MiB"
fi
# Shared subtrees: 2^40 paths, 41 objects; commit, check and gc walk each object once.
timeout 120 python3 "$MIRAGE_SOURCE/tests/e2e/attack_trees.py" "$SERVER_URL" "$token" evil bomb 40 || fail "DAG commit"
export MIRAGE_TOKEN=$ADMIN_TOKEN
expect_exit 0 timeout 120 mirage check --output json
expect_exit 0 timeout 120 mirage gc --output json
# The bomb is the latest snapshot; commit the good split directory again and restore it.
attack attacks >/dev/null
expect_exit 0 timeout 120 env MIRAGE_TOKEN="$token" mirage-restore snapshots --device evil --output json
snaps=$(printf %s "$OUT" | python3 -c 'import json,sys; print(" ".join(s["snapshot_id"] for s in json.load(sys.stdin)["snapshots"]))')
set -- $snaps; shift $(($# - 3)); dag=$1; good=$3
expect_exit 0 timeout 120 env MIRAGE_TOKEN="$token" mirage-restore --device evil --snapshot "$good" --path / --to "$TEST_TMP/out" --output json
[ "$(ls "$TEST_TMP/out" | tr '\n' ' ')" = "a b c d " ] || fail "restored: $(ls "$TEST_TMP/out")"
[ "$(cat "$TEST_TMP/out/a")" = x ] || fail "restored content"
# Split subdirectories shared by several paths: each restored in full (4 + 4 + 8 + 8 files).
expect_exit 0 timeout 120 env MIRAGE_TOKEN="$token" mirage-restore --device evil --snapshot "$dag" --path / --to "$TEST_TMP/dag" --output json
[ "$(find "$TEST_TMP/dag" -type f | wc -l)" = 24 ] || fail "restored DAG: $(find "$TEST_TMP/dag" | head)"
kill -0 "$SERVER_PID" || fail "server died"
echo ok

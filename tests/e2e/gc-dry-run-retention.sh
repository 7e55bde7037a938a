#!/usr/bin/env bash
# gc --dry-run reports what the real run does: on a fake clock, a device syncs four
# times (each sync with data only it holds), then its policy is thinned to keep one
# snapshot. The dry run names the three snapshots retention would expire and counts
# the chunks only they hold; the real run then expires exactly those and deletes
# exactly that many chunks. (Before, the dry run skipped retention: 0 and 0.)
source "$(dirname "$0")/lib.sh"
need python3
src="$TEST_TMP/src"
mkdir -p "$src/etc"
echo '{"retention": {"last": 24}}' >"$TEST_TMP/keep.json"
mirage policy set pol --file "$TEST_TMP/keep.json" >/dev/null
n=0
for when in 2026-03-01T10:00:00Z 2026-03-02T10:00:00Z 2026-03-03T10:00:00Z 2026-03-04T10:00:00Z; do
  n=$((n + 1))
  head -c 300000 /dev/urandom >"$src/etc/unique.bin"
  if [ "$n" = 1 ]; then
    MIRAGE_TEST_NOW=$when centralize_accepted "$src" dev-gc >/dev/null
    mirage policy assign pol --device dev-gc >/dev/null
  else
    MIRAGE_TEST_NOW=$when mirage-centralize --root "$src" --device-id dev-gc --output json >/dev/null
  fi
done
expect_exit 0 mirage-restore snapshots --device dev-gc --output json
[ "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["snapshots"]))' "$OUT")" = 4 ] || fail "expected 4 snapshots: $OUT"
newest=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["snapshots"][-1]["snapshot_id"])' "$OUT")
echo '{"retention": {"last": 1, "hourly": 0, "daily": 0, "weekly": 0, "monthly": 0}}' >"$TEST_TMP/thin.json"
mirage policy set pol --file "$TEST_TMP/thin.json" >/dev/null
export MIRAGE_TEST_NOW=2026-03-05T10:00:00Z
expect_exit 0 mirage gc --dry-run --grace 0s --output json
echo "$OUT" >"$TEST_TMP/dry.json"
expect_exit 0 mirage gc --dry-run --grace 0s --output text
expect_contains "$OUT" "3 snapshots would expire"
# The dry run changed nothing.
expect_exit 0 mirage-restore snapshots --device dev-gc --output json
[ "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["snapshots"]))' "$OUT")" = 4 ] || fail "the dry run expired snapshots"
expect_exit 0 mirage gc --grace 0s --output json
python3 - "$TEST_TMP/dry.json" "$OUT" "$newest" <<'PY'
import json, sys
dry, real, newest = json.load(open(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3]
assert dry["dry_run"] and not real["dry_run"]
assert dry["snapshots_expired"] == 3 == real["snapshots_expired"], (dry, real)
assert sorted(dry["expired_snapshots"]) == sorted(real["expired_snapshots"]), (dry, real)
assert newest not in real["expired_snapshots"]
assert dry["would_delete"] > 0 and dry["would_delete"] == real["deleted"], (dry["would_delete"], real["deleted"])
assert dry["would_delete_bytes"] == real["deleted_bytes"], (dry, real)
PY
[ $? = 0 ] || fail "dry run and real run differ"
expect_exit 0 mirage gc --dry-run --grace 0s --output json
expect_contains "$OUT" '"snapshots_expired":0'
expect_contains "$OUT" '"would_delete":0'
expect_exit 0 mirage check --read-data --output json
rm -rf "$TEST_TMP/back"
expect_exit 0 mirage-restore --device dev-gc --path /etc --to "$TEST_TMP/back" --output json
cmp "$src/etc/unique.bin" "$TEST_TMP/back/etc/unique.bin" || fail "the kept snapshot restored wrong"
echo ok

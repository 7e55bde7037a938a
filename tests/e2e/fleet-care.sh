#!/usr/bin/env bash
# Looking after a fleet, on a fake clock: the device list with each device's last sync,
# its age, last snapshot, layers and pending orders; --stale; renaming a device;
# forgetting a snapshot (pinned ones need --force) and deleting a device with its CVD,
# after which GC frees what only they held and never what another device still uses;
# deleting a layer version (refused while assigned); collection create refusing an
# existing name without --replace and an unknown inventory key; volume add of a missing
# directory refused without --create; audit events found by the device they touch.
source "$(dirname "$0")/lib.sh"
need python3
jq_py() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$OUT"; }
mk() {  # mk NAME: an endpoint root with a file every device shares and one of its own
  mkdir -p "$TEST_TMP/$1/etc"
  head -c 300000 /dev/urandom >"$TEST_TMP/$1/etc/own.bin"
  cp "$TEST_TMP/shared.bin" "$TEST_TMP/$1/etc/shared.bin"
}
head -c 400000 /dev/urandom >"$TEST_TMP/shared.bin"
mk a; mk b
MIRAGE_TEST_NOW=2026-02-01T08:00:00Z centralize_accepted "$TEST_TMP/a" dev-a >/dev/null
MIRAGE_TEST_NOW=2026-02-01T08:00:00Z centralize_accepted "$TEST_TMP/b" dev-b >/dev/null
# dev-b: a snapshot on request (pinned), then one more sync; dev-a syncs two days later.
MIRAGE_TEST_NOW=2026-02-01T09:00:00Z mirage-centralize request --device dev-b --reason audit >/dev/null
MIRAGE_TEST_NOW=2026-02-01T09:00:00Z mirage-centralize --root "$TEST_TMP/b" --device-id dev-b >/dev/null
head -c 300000 /dev/urandom >"$TEST_TMP/b/etc/later.bin"
MIRAGE_TEST_NOW=2026-02-01T10:00:00Z mirage-centralize --root "$TEST_TMP/b" --device-id dev-b >/dev/null
MIRAGE_TEST_NOW=2026-02-03T08:00:00Z mirage-centralize --root "$TEST_TMP/a" --device-id dev-a >/dev/null
export MIRAGE_TEST_NOW=2026-02-03T09:30:00Z

# The list: JSON has every column, text is an aligned table with a header.
expect_exit 0 mirage device list --output json
python3 - "$OUT" <<'PY'
import json, sys
d = {x["device_id"]: x for x in json.loads(sys.argv[1])["devices"]}
a, b = d["dev-a"], d["dev-b"]
assert a["last_sync"] == "2026-02-03T08:00:00Z" and a["last_sync_age_seconds"] == 5400, a
assert b["last_sync"] == "2026-02-01T10:00:00Z" and b["last_sync_age_seconds"] == 2 * 86400 - 1800, b
assert a["snapshots"] == 2 and b["snapshots"] == 3 and b["pinned_snapshots"] == 1, (a, b)
assert a["pending_orders"] == 0 and a["layers"] == [] and len(a["last_snapshot"]) == 16, a
PY
[ $? = 0 ] || fail "device list JSON"
expect_exit 0 mirage device list --output text
head=$(printf '%s\n' "$OUT" | head -1)
expect_contains "$head" "DEVICE"
expect_contains "$head" "LAST SYNC"
expect_contains "$head" "PENDING"
col=$(awk -v h="$head" 'BEGIN { print index(h, "AGE") }')
printf '%s\n' "$OUT" | grep -q '^dev-a ' || fail "no dev-a row: $OUT"
[ "$(printf '%s\n' "$OUT" | awk -v c="$col" '/^dev-a / { print substr($0, c, 3) }')" = "1h " ] || fail "AGE column not aligned: $OUT"
[ "$(printf '%s\n' "$OUT" | awk -v c="$col" '/^dev-b / { print substr($0, c, 3) }')" = "1d " ] || fail "AGE column not aligned: $OUT"
# --stale: dev-b has not synced for 24h, dev-a has.
expect_exit 0 mirage device list --stale 24h --output json
[ "$(jq_py '" ".join(x["device_id"] for x in d["devices"])')" = dev-b ] || fail "--stale 24h: $OUT"
expect_exit 0 mirage device list --stale 3d --output text
[ "$OUT" = "no devices" ] || fail "--stale 3d: $OUT"
expect_exit 2 mirage device list --stale soon
expect_contains "$ERR" "--stale"

# Rename: a name, unique, shown in the list; the audit event names the device.
expect_exit 0 mirage device rename dev-a kiosk-1 --output json
expect_contains "$OUT" '"name":"kiosk-1"'
expect_exit 5 mirage device rename dev-b kiosk-1
expect_contains "$ERR" "device name kiosk-1 is taken by device dev-a"
expect_exit 2 mirage device rename dev-b 'bad name'
expect_contains "$ERR" "device name 'bad name'"
expect_exit 3 mirage device rename nodev kiosk-2
expect_contains "$ERR" "device nodev: no device has this id, name or hostname"
expect_exit 0 mirage device list --output text
expect_contains "$OUT" "kiosk-1"
expect_exit 0 mirage events --device dev-a --type audit
expect_contains "$OUT" '"method":"device.rename"'

# Forget: unknown, pinned without --force, then a plain one; its own data goes with gc.
expect_exit 0 mirage-restore snapshots --device dev-b --output json
echo "$OUT" >"$TEST_TMP/b.json"
pinned=$(python3 -c 'import json,sys; print([s["snapshot_id"] for s in json.load(open(sys.argv[1]))["snapshots"] if s["pinned"]][0])' "$TEST_TMP/b.json")
plain=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshots"][0]["snapshot_id"])' "$TEST_TMP/b.json")
expect_exit 3 mirage snapshot forget 0000000000000000
expect_contains "$ERR" "snapshot 0000000000000000: not found"
expect_exit 5 mirage snapshot forget "$pinned"
expect_contains "$ERR" "snapshot $pinned is pinned; --force forgets it anyway"
expect_exit 0 mirage snapshot forget "$plain" --output json
expect_contains "$OUT" '"forgotten":true'
expect_exit 0 mirage-restore snapshots --device dev-b --output json
case "$OUT" in *"$plain"*) fail "forgotten snapshot still listed" ;; esac
expect_exit 0 mirage events --device dev-b --type snapshot.forgotten
expect_contains "$OUT" "$plain"
expect_exit 0 mirage events --device dev-b --type audit
expect_contains "$OUT" '"method":"snapshot.forget"'

# Delete dev-b: refused for its pinned snapshot, then with --force; GC frees what only
# it held (its own files), never the file dev-a shares.
expect_exit 5 mirage device delete dev-b
expect_contains "$ERR" "device dev-b has 1 pinned snapshots; --force deletes them with it"
expect_exit 0 mirage device delete dev-b --force --output json
expect_contains "$OUT" '"snapshots":2'
expect_exit 0 mirage gc --grace 0s --output json
deleted=$(jq_py 'd["deleted"]')
[ "$deleted" -gt 0 ] || fail "gc freed nothing after the delete: $OUT"
expect_exit 0 mirage check --read-data --output json
expect_contains "$OUT" '"ok":true'
rm -rf "$TEST_TMP/back"
expect_exit 0 mirage-restore --device dev-a --path /etc --to "$TEST_TMP/back" --output json
cmp "$TEST_TMP/shared.bin" "$TEST_TMP/back/etc/shared.bin" || fail "the shared file lost its data"
cmp "$TEST_TMP/a/etc/own.bin" "$TEST_TMP/back/etc/own.bin" || fail "dev-a's own file lost its data"
expect_exit 3 mirage device delete dev-b

# Layer versions: one assigned is refused, one free is deleted; numbers are not reused.
mkdir -p "$TEST_TMP/base/etc"; echo v1 >"$TEST_TMP/base/etc/motd"
mirage-capture base --root "$TEST_TMP/base" --name fbase >/dev/null
echo v2 >"$TEST_TMP/base/etc/motd"
mirage-capture base --root "$TEST_TMP/base" --name fbase >/dev/null
mirage-assign --device dev-a --base fbase@1 >/dev/null
expect_exit 0 mirage device list --output json
[ "$(jq_py 'd["devices"][0]["pending_orders"]')" = 1 ] || fail "pending orders: $OUT"
expect_exit 5 mirage layer delete fbase@1
expect_contains "$ERR" "layer fbase@1 is assigned to 1 devices (dev-a)"
expect_exit 2 mirage layer delete fbase
expect_contains "$ERR" "give NAME@VERSION"
expect_exit 3 mirage layer delete fbase@7
expect_contains "$ERR" "layer fbase@7: not found"
expect_exit 0 mirage layer delete fbase@2 --output json
expect_contains "$OUT" '"layer":"fbase@2"'
echo v3 >"$TEST_TMP/base/etc/motd"
expect_exit 0 mirage-capture base --root "$TEST_TMP/base" --name fbase --output json
expect_contains "$OUT" '"version":3'

# Collections: an existing name needs --replace; an unknown inventory key is named.
expect_exit 0 mirage collection create lab --device dev-a --output json
expect_exit 5 mirage collection create lab --hostname 'x*'
expect_contains "$ERR" "collection lab exists; --replace replaces it"
expect_exit 0 mirage collection create lab --hostname 'x*' --replace --output json
expect_contains "$OUT" '"kind":"dynamic"'
expect_exit 2 mirage collection create odd --field colour=blue
expect_contains "$ERR" "unknown inventory key 'colour' (known: arch, os_id, os_version, os_name, sys_vendor, product_name, product_version, pci)"
expect_exit 2 mirage-capture driver --root "$TEST_TMP/base" --name drv --match colour=blue
expect_contains "$ERR" "unknown inventory key 'colour'"

# Volumes: a missing directory is refused unless --create.
expect_exit 3 mirage volume add "$TEST_TMP/vol2"
expect_contains "$ERR" "volume $TEST_TMP/vol2: no such directory (--create makes it)"
expect_exit 0 mirage volume add "$TEST_TMP/vol2" --create --output json
[ -d "$TEST_TMP/vol2" ] || fail "--create made no directory"
echo ok

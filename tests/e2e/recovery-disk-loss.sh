#!/usr/bin/env bash
# Disk loss over HTTPS, each machine with its own state directory: an enrolled device's
# id registered again by a machine without its credential waits for re-enrolment
# (exit 5, state "reenroll", listed by `pending`), syncs nothing and reads nothing, and
# never locks the enrolled machine out; a second machine with the same id is not
# recorded, and then the admin must name a fingerprint. `accept --reenroll` gives the
# waiting machine (the fingerprint it printed, checked here from its own secret) a
# credential, revokes the old one, and keeps the CVD's snapshots, layers and policy;
# its restore of the CVD's newest snapshot (offline, and on the device by a full revert)
# equals the lost tree (independent lister).
# Re-enrolling a device no machine waits for is refused. --watch on the waiting machine
# says once what the admin must run and backs off.
source "$(dirname "$0")/lib.sh"
need openssl python3
start_https_fleet "$TEST_TMP/server"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# fingerprint STATE: the first 16 hex digits of the SHA-256 of the machine's secret.
fingerprint() { printf '%s' "$(cat "$1/credential")" | sha256sum | cut -c1-16; }
sync_pc() {  # sync_pc EXIT ROOT STATE: one sync of device pc-1 on its own credential
  expect_exit "$1" mirage-centralize --root "$2" --device-id pc-1 --state "$3" --output json
}

src=$TEST_TMP/src
make_every_kind "$src"
mkdir -p "$src/etc" "$src/home/u"; echo pc-1 >"$src/etc/hostname"; echo mine >"$src/home/u/notes"
echo '{"retention": {"last": 50}}' >"$TEST_TMP/kiosks.json"
admin mirage policy set kiosks --file "$TEST_TMP/kiosks.json" >/dev/null
sync_pc 5 "$src" "$TEST_TMP/s-old"
admin mirage-centralize accept pc-1 --policy kiosks >/dev/null
mkdir -p "$TEST_TMP/layer/usr/bin"; printf 'tool\n' >"$TEST_TMP/layer/usr/bin/tool"
admin mirage-capture base --root "$TEST_TMP/layer" --name lb --output json >/dev/null
admin mirage-assign --device pc-1 --base lb --output json >/dev/null
sync_pc 0 "$src" "$TEST_TMP/s-old"
[ "$(cat "$src/usr/bin/tool")" = tool ] || fail "the layer was not applied"
expect_exit 2 admin mirage-centralize accept pc-1 --reenroll --output json --fingerprint nothex
expect_exit 2 admin mirage-centralize accept pc-1 --fingerprint 0123456789abcdef
# Nothing waits yet: a re-enrolment is refused.
expect_exit 5 admin mirage-centralize accept pc-1 --reenroll
expect_contains "$ERR" "not awaiting re-enrolment"
snaps_before=$(admin mirage-restore snapshots --device pc-1 --output json | json 'len(d["snapshots"])')

# The disk is lost: a fresh tree, the same id, no credential.
fresh=$TEST_TMP/fresh
mkdir -p "$fresh/etc"; echo pc-1 >"$fresh/etc/hostname"
sync_pc 5 "$fresh" "$TEST_TMP/s-new"
expect_contains "$OUT" '"state":"reenroll"'
fp=$(fingerprint "$TEST_TMP/s-new")
expect_contains "$OUT" "fingerprint $fp"
# Again, now on its new secret: still waiting, nothing synced, nothing readable.
sync_pc 5 "$fresh" "$TEST_TMP/s-new"
expect_contains "$OUT" '"state":"reenroll"'
[ "$(echo "$OUT" | json 'd.get("snapshot")')" = None ] || fail "a waiting machine synced: $OUT"
# --watch while it waits: says once what the admin must run, and asks less and less often
# (--poll 0.2s doubling: 5 syncs or fewer in the 4 s after the first, not about 15).
mirage-centralize --root "$fresh" --device-id pc-1 --state "$TEST_TMP/s-new" --watch --poll 0.2s --jitter 0 \
  --output json >"$TEST_TMP/watch.out" 2>"$TEST_TMP/watch.err" &
watcher=$!
for _ in $(seq 1 200); do grep -q reenroll "$TEST_TMP/watch.out" 2>/dev/null && break; sleep 0.1; done
sleep 4
kill -TERM $watcher; wait $watcher || true
[ "$(grep -c -- "--reenroll --fingerprint $fp" "$TEST_TMP/watch.err")" = 1 ] ||
  fail "--watch did not say once what the admin must run: $(cat "$TEST_TMP/watch.err")"
syncs=$(grep -c '"state":"reenroll"' "$TEST_TMP/watch.out")
[ "$syncs" -ge 2 ] && [ "$syncs" -le 6 ] || fail "--watch synced $syncs times in 4 s while awaiting re-enrolment"
expect_exit 5 env MIRAGE_TOKEN="mdc_pc-1.$(cat "$TEST_TMP/s-new/credential")" mirage-restore snapshots --device pc-1
# The enrolled machine is not locked out by whoever registered its id.
sync_pc 0 "$src" "$TEST_TMP/s-old"
expect_exit 0 admin mirage-centralize pending --output json
[ "$(echo "$OUT" | json '[x["reenroll"]["fingerprint"] for x in d["devices"] if x["device_id"]=="pc-1"][0]')" = "$fp" ] ||
  fail "pending does not show pc-1 awaiting re-enrolment: $OUT"
expect_exit 0 admin mirage-centralize pending --output text
expect_contains "$OUT" "reenroll"
expect_exit 0 admin mirage device list --output json
expect_contains "$OUT" "\"fingerprint\":\"$fp\""
expect_exit 0 admin mirage-centralize devices --state reenroll --output json
[ "$(echo "$OUT" | json 'len(d["devices"])')" = 1 ] || fail "devices --state reenroll: $OUT"

# A second machine claims the id while one waits: not recorded; the admin must pick.
sync_pc 5 "$fresh" "$TEST_TMP/s-other"
expect_contains "$OUT" "another machine"
other=$(fingerprint "$TEST_TMP/s-other")
sync_pc 5 "$fresh" "$TEST_TMP/s-other"   # on its secret: still waiting, never given the id
expect_exit 5 admin mirage-centralize accept pc-1 --reenroll
expect_contains "$ERR" "fingerprint"
expect_exit 5 admin mirage-centralize accept pc-1 --reenroll --fingerprint 0123456789abcdef
expect_exit 0 admin mirage events --device pc-1 --type device.reenroll_contested --output json
expect_contains "$OUT" "$other"

expect_exit 0 admin mirage-centralize accept pc-1 --reenroll --fingerprint "$fp" --output json
[ "$(echo "$OUT" | json 'd["revoked"]')" = True ] || fail "the old credential was not revoked: $OUT"
expect_exit 0 admin mirage events --device pc-1 --type device.reenrolled --output json
expect_contains "$OUT" "$fp"
expect_exit 0 admin mirage events --device pc-1 --type audit --output json
expect_contains "$OUT" '"method":"device.reenroll"'
# The old credential and the other machine's are refused; no re-enrolment waits now.
sync_pc 4 "$src" "$TEST_TMP/s-old"
sync_pc 4 "$fresh" "$TEST_TMP/s-other"
expect_exit 5 admin mirage-centralize accept pc-1 --reenroll
# The CVD is kept: snapshots, layers, policy.
expect_exit 0 admin mirage device list --output json
expect_contains "$OUT" '"policy":"kiosks"'
expect_contains "$OUT" '"layers":["lb@1"]'
snaps_after=$(admin mirage-restore snapshots --device pc-1 --output json | json 'len(d["snapshots"])')
[ "$snaps_after" = "$snaps_before" ] || [ "$snaps_after" = $((snaps_before + 1)) ] ||
  fail "snapshots before $snaps_before, after $snaps_after"
# The new machine reads its CVD on its new credential: the lost tree comes back whole,
# offline (--path / --to, the bare-metal path) ...
MIRAGE_TOKEN="mdc_pc-1.$(cat "$TEST_TMP/s-new/credential")" mirage-restore --device pc-1 --path / \
  --to "$TEST_TMP/back" --output json >/dev/null
expect_same_tree "$src" "$TEST_TMP/back"
# ... and on the device: a full revert to the newest snapshot, carried out by its next sync.
expect_exit 0 admin mirage-restore --device pc-1 --on-device --mode full --latest --output json
sync_pc 0 "$fresh" "$TEST_TMP/s-new"
expect_same_tree "$src" "$fresh"
echo ok

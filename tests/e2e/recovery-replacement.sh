#!/usr/bin/env bash
# A replacement device over HTTPS, each machine on its own credential and state
# directory: `mirage-restore --device NEW --from-device OLD --mode full` moves OLD's CVD
# to NEW (snapshots, layers, policy), queues NEW's full revert to the CVD's newest
# snapshot and an assign that matches driver profiles against NEW's inventory; OLD's
# next sync is refused (exit 4, naming NEW). NEW's next syncs make its tree OLD's
# (independent lister) with NEW's driver instead of OLD's. --mode user-data keeps
# NEW's system and gives it OLD's user area. Refused: NEW == OLD (2), a NEW with
# snapshots of its own (5), an OLD already replaced (5), a helpdesk token (4).
source "$(dirname "$0")/lib.sh"
need openssl python3
start_https_fleet "$TEST_TMP/server"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
sync_dev() {  # sync_dev EXIT DEVICE ROOT: one sync on the device's own credential
  expect_exit "$1" mirage-centralize --root "$3" --device-id "$2" --state "$TEST_TMP/state-$2" --output json
}
machine() {  # machine DIR MODEL: a small system of a hardware model (os_name stands in for DMI)
  mkdir -p "$1/etc" "$1/usr/bin" "$1/home/u"
  printf 'PRETTY_NAME="%s"\nID=debian\nVERSION_ID=12\n' "$2" >"$1/etc/os-release"
  echo "$2" >"$1/etc/hostname"
}

old=$TEST_TMP/old
machine "$old" "Old Model"
make_every_kind "$old/home/u/stuff"
rm "$old/home/u/stuff/$(printf 'caf\xe9')"  # not UTF-8: the revert's journal cannot hold it yet
echo 'old notes' >"$old/home/u/notes"
echo '{"retention": {"last": 40}}' >"$TEST_TMP/p.json"
admin mirage policy set kiosks --file "$TEST_TMP/p.json" >/dev/null
mkdir -p "$TEST_TMP/base/usr/bin" "$TEST_TMP/fw-old/usr/lib/firmware" "$TEST_TMP/fw-new/usr/lib/firmware"
echo 'tool' >"$TEST_TMP/base/usr/bin/tool"
echo 'old firmware' >"$TEST_TMP/fw-old/usr/lib/firmware/old.bin"
echo 'new firmware' >"$TEST_TMP/fw-new/usr/lib/firmware/new.bin"
admin mirage-capture base --root "$TEST_TMP/base" --name lb --output json >/dev/null
admin mirage-capture driver --root "$TEST_TMP/fw-old" --name drv-old --match 'os_name=Old*' --output json >/dev/null
admin mirage-capture driver --root "$TEST_TMP/fw-new" --name drv-new --match 'os_name=New*' --output json >/dev/null
sync_dev 5 pc-old "$old"
admin mirage-centralize accept pc-old --policy kiosks >/dev/null
admin mirage-assign --device pc-old --base lb --output json >/dev/null
sync_dev 0 pc-old "$old"
sync_dev 0 pc-old "$old"
[ -f "$old/usr/lib/firmware/old.bin" ] && [ ! -e "$old/usr/lib/firmware/new.bin" ] || fail "OLD's driver was not matched"
old_snaps=$(admin mirage-restore snapshots --device pc-old --output json | json '[s["snapshot_id"] for s in d["snapshots"]]')

new=$TEST_TMP/new
machine "$new" "New Model"
echo 'factory' >"$new/usr/bin/factory-tool"
sync_dev 5 pc-new "$new"   # registered, pending: it waits for its takeover

expect_exit 2 admin mirage-restore --device pc-old --from-device pc-old
expect_exit 2 admin mirage-restore --device pc-new --from-device pc-old --mode system
expect_exit 2 admin mirage-restore --device pc-new --from-device pc-old --path / --to "$TEST_TMP/x"
used=$TEST_TMP/used
machine "$used" "New Model"
sync_dev 5 pc-used "$used"
admin mirage-centralize accept pc-used >/dev/null
sync_dev 0 pc-used "$used"
expect_exit 5 admin mirage-restore --device pc-used --from-device pc-old
expect_contains "$ERR" "snapshots of its own"
helpdesk=$(admin mirage token create --name desk --role helpdesk --output json | json 'd["token"]')
expect_exit 4 env MIRAGE_TOKEN="$helpdesk" mirage-restore --device pc-new --from-device pc-old

expect_exit 0 admin mirage-restore --device pc-new --from-device pc-old --mode full --output json
[ "$(echo "$OUT" | json '[o["spec"]["type"] for o in d["orders"]]')" = "['revert', 'assign']" ] ||
  fail "expected a revert and an assign order: $OUT"
expect_exit 0 admin mirage-restore snapshots --device pc-new --output json
[ "$(echo "$OUT" | json '[s["snapshot_id"] for s in d["snapshots"]]')" = "$old_snaps" ] ||
  fail "pc-new does not list pc-old's history: $OUT"
# OLD can no longer sync: refused, exit 4, naming the device that took over.
sync_dev 4 pc-old "$old"
expect_contains "$ERR" "replaced by device pc-new"
expect_exit 0 admin mirage device list --output json
[ "$(echo "$OUT" | json '[x["state"]+"/"+str(x["replaced_by"]) for x in d["devices"] if x["device_id"]=="pc-old"][0]')" = \
  "replaced/pc-new" ] || fail "pc-old is not shown replaced: $OUT"
# OLD once replaced is not taken over again (by another device), nor accepted back.
mkdir -p "$TEST_TMP/third"; sync_dev 5 pc-third "$TEST_TMP/third"
expect_exit 5 admin mirage-restore --device pc-third --from-device pc-old
expect_contains "$ERR" "already replaced"
expect_exit 5 admin mirage-centralize accept pc-old
expect_exit 0 admin mirage events --device pc-old --type device.replaced --output json
expect_contains "$OUT" '"replaced_by":"pc-new"'
expect_exit 0 admin mirage events --device pc-new --type audit --output json
expect_contains "$OUT" '"method":"device.replace"'

# NEW's first sync: the revert (after a pinned snapshot of NEW as it was): OLD's tree.
sync_dev 0 pc-new "$new"
expect_same_tree "$old" "$new"
# Its next: the assign, NEW's driver in place of OLD's.
sync_dev 0 pc-new "$new"
[ "$(cat "$new/usr/lib/firmware/new.bin")" = 'new firmware' ] || fail "NEW's driver was not matched"
[ ! -e "$new/usr/lib/firmware/old.bin" ] || fail "OLD's driver is still on NEW"
[ ! -e "$new/usr/bin/factory-tool" ] || fail "a full revert kept what the snapshot lacks"
expect_same_tree "$old/home" "$new/home"
expect_exit 0 admin mirage device list --output json
expect_contains "$OUT" '"layers":["lb@1","drv-new@1"]'
expect_contains "$OUT" '"policy":"kiosks"'

# user-data: NEW keeps its system, gets OLD's user area and layers.
old2=$TEST_TMP/old2 new2=$TEST_TMP/new2
machine "$old2" "Old Model"; echo 'mine' >"$old2/home/u/notes"; echo 'old conf' >"$old2/etc/app.conf"
machine "$new2" "New Model"; echo 'new conf' >"$new2/etc/app.conf"
sync_dev 5 pc-a "$old2"; admin mirage-centralize accept pc-a >/dev/null
admin mirage-assign --device pc-a --base lb --output json >/dev/null
sync_dev 0 pc-a "$old2"
sync_dev 5 pc-b "$new2"
expect_exit 0 admin mirage-restore --device pc-b --from-device pc-a --mode user-data --output json
sync_dev 0 pc-b "$new2"
sync_dev 0 pc-b "$new2"
[ "$(cat "$new2/home/u/notes")" = mine ] || fail "user-data did not bring OLD's user area"
[ "$(cat "$new2/etc/app.conf")" = 'new conf' ] || fail "user-data changed NEW's system"
[ "$(cat "$new2/usr/bin/tool")" = tool ] || fail "user-data did not give NEW OLD's layers"
echo ok

#!/usr/bin/env bash
# --device (or a DEVICE argument) takes a device's id, its name (device rename) or its
# hostname when one device has it, in every command: events, stats, policy assign,
# collection create, device tag/rename/delete, snapshot forget, mirage-assign, request,
# accept. A hostname two devices share is a usage error (exit 2) naming both; none is
# exit 3. The events of a device deleted since are still found by its id.
source "$(dirname "$0")/lib.sh"
need python3
jq_py() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$OUT"; }
mk() {  # mk DIR HOSTNAME
  mkdir -p "$TEST_TMP/$1/etc"; echo "$2" >"$TEST_TMP/$1/etc/hostname"; echo "$1" >"$TEST_TMP/$1/etc/own"
}
mk solo pc-solo; mk x pc-twin; mk y pc-twin
centralize_accepted "$TEST_TMP/solo" dev-solo >/dev/null
centralize_accepted "$TEST_TMP/x" dev-x >/dev/null
centralize_accepted "$TEST_TMP/y" dev-y >/dev/null
echo more >"$TEST_TMP/solo/etc/more"
mirage-centralize --root "$TEST_TMP/solo" --device-id dev-solo --output json >/dev/null

# ambiguous CMD...: pc-twin names two devices: exit 2, both ids listed.
ambiguous() {
  expect_exit 2 "$@" --output json
  expect_contains "$ERR" '2 devices have this hostname'
  expect_contains "$ERR" dev-x
  expect_contains "$ERR" dev-y
  python3 -c 'import json,sys; json.loads(sys.argv[1])["error"]' "$ERR" || fail "not a JSON error: $ERR"
}

# By hostname: rename, then everything else by the name and by the hostname.
expect_exit 0 mirage device rename pc-solo front-desk --output json
[ "$(jq_py 'd["device_id"]')" = dev-solo ] || fail "rename by hostname: $OUT"
for spec in front-desk pc-solo PC-SOLO; do
  expect_exit 0 mirage events --device "$spec" --output json
  [ -n "$OUT" ] || fail "events --device $spec: none"
  python3 - "$OUT" <<'PY' || fail "events --device $spec: $OUT"
import json, sys
ids = {json.loads(l)["device_id"] for l in sys.argv[1].splitlines()}
assert ids == {"dev-solo"}, ids
PY
  expect_exit 0 mirage stats --device "$spec" --output json
  [ "$(jq_py '[x["device_id"] for x in d["devices"]]')" = "['dev-solo']" ] || fail "stats --device $spec: $OUT"
  expect_exit 0 mirage-assign status --device "$spec" --output text
  expect_contains "$OUT" dev-solo
done
expect_exit 0 mirage policy set desk --file - --output json <<<'{"retention": {"last": 5}}'
expect_exit 0 mirage policy assign desk --device front-desk --output json
[ "$(jq_py 'd["devices"]')" = "['dev-solo']" ] || fail "policy assign by name: $OUT"
expect_exit 0 mirage collection create desks --device pc-solo --device dev-x --output json
[ "$(jq_py 'sorted(d["members"])')" = "['dev-solo', 'dev-x']" ] || fail "collection by hostname: $OUT"
expect_exit 0 mirage device tag front-desk --add lobby --output json
[ "$(jq_py 'd["device_id"]')" = dev-solo ] || fail "tag by name: $OUT"
expect_exit 0 mirage-centralize request --device pc-solo --output json
[ "$(jq_py 'd["orders"][0]["device_id"]')" = dev-solo ] || fail "request by hostname: $OUT"
expect_exit 0 mirage-centralize reject pc-solo --output json
expect_contains "$OUT" '"state":"rejected"'
expect_exit 0 mirage-centralize accept front-desk --output json
expect_contains "$OUT" '"state":"accepted"'

# snapshot forget --device: a prefix or time on that device; another device's id is not
# found there.
expect_exit 0 mirage-restore snapshots --device dev-x --output json
x_snap=$(jq_py 'd["snapshots"][0]["snapshot_id"]')
expect_exit 3 mirage snapshot forget --device pc-solo "$x_snap" --output json
expect_exit 0 mirage-restore snapshots --device front-desk --output json
first=$(jq_py 'd["snapshots"][0]["snapshot_id"]')
expect_exit 0 mirage snapshot forget --device pc-solo "${first:0:8}" --output json
[ "$(jq_py 'd["snapshot_id"] + " " + d["device_id"]')" = "$first dev-solo" ] || fail "forget by prefix: $OUT"

# A hostname two devices have, everywhere.
ambiguous mirage events --device pc-twin
ambiguous mirage stats --device pc-twin
ambiguous mirage policy assign desk --device pc-twin
ambiguous mirage collection create twins --device pc-twin
ambiguous mirage device tag pc-twin --add x
ambiguous mirage device rename pc-twin twin
ambiguous mirage device delete pc-twin
ambiguous mirage snapshot forget --device pc-twin latest
ambiguous mirage-assign --device pc-twin --enforce
ambiguous mirage-assign status --device pc-twin
ambiguous mirage-centralize request --device pc-twin
ambiguous mirage-centralize accept pc-twin
ambiguous mirage-restore ls --device pc-twin /
expect_exit 0 mirage-restore snapshots --device dev-x --output json  # ids still work
for cmd in "mirage stats --device" "mirage device delete" "mirage-assign status --device" "mirage device rename"; do
  expect_exit 3 $cmd pc-nobody $([ "$cmd" = "mirage device rename" ] && echo n) --output json
  expect_contains "$ERR" 'no device has this id, name or hostname'
done

# Delete by name; its events stay, found by its id.
expect_exit 0 mirage device delete front-desk --output json
[ "$(jq_py 'd["device_id"]')" = dev-solo ] || fail "delete by name: $OUT"
expect_exit 0 mirage events --device dev-solo --output json
expect_contains "$OUT" '"type":"device.deleted"'
expect_exit 3 mirage stats --device front-desk --output json
echo "device-by-name: ok"

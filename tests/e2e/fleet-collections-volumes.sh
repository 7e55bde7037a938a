#!/usr/bin/env bash
# Fleet management: device tags; static and dynamic collections (hostname glob, OS,
# tag, inventory field) resolved when used, by mirage-assign, policy assign, snapshot
# requests and device list; policies listed and assigned; storage volumes added, listed
# and set read-only, with new CVDs placed on the writable volume with the most free
# space; every admin change in the audit journal with who made it; transactions with
# their bytes.
source "$(dirname "$0")/lib.sh"
need python3
mk() {  # mk N HOSTNAME: an endpoint root
  mkdir -p "$TEST_TMP/src$1/etc"
  echo "$2" >"$TEST_TMP/src$1/etc/hostname"
  printf 'ID=debian\nVERSION_ID="12"\n' >"$TEST_TMP/src$1/etc/os-release"
  head -c 200000 /dev/urandom >"$TEST_TMP/src$1/etc/own.bin"
}
mk 1 web-01; mk 2 web-02; mk 3 db-01
printf 'ID=ubuntu\nVERSION_ID="24.04"\n' >"$TEST_TMP/src3/etc/os-release"
for i in 1 2 3; do centralize_accepted "$TEST_TMP/src$i" "dev$i" >/dev/null; done
expect_exit 0 mirage device tag dev2 --add lab --add eu --output json
expect_contains "$OUT" '"tags":["lab","eu"]'
expect_exit 0 mirage device tag dev2 --remove eu --output json
expect_contains "$OUT" '"tags":["lab"]'
expect_exit 2 mirage device tag dev2 --add 'bad tag'
expect_exit 3 mirage device tag nodev --add x
# Collections.
members() { mirage collection show "$1" --output json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["members"]))'; }
expect_exit 0 mirage collection create webs --hostname 'web-*' --output json
expect_contains "$OUT" '"kind":"dynamic"'
[ "$(members webs)" = "dev1 dev2" ] || fail "webs: $(members webs)"
mirage collection create debians --os debian --os-version '12*' >/dev/null
[ "$(members debians)" = "dev1 dev2" ] || fail "debians: $(members debians)"
mirage collection create ubuntu --field os_id=ubuntu >/dev/null
[ "$(members ubuntu)" = "dev3" ] || fail "ubuntu by field: $(members ubuntu)"
mirage collection create lab --tag lab >/dev/null
[ "$(members lab)" = "dev2" ] || fail "lab: $(members lab)"
mirage collection create pair --device dev3 --device dev1 >/dev/null
[ "$(members pair)" = "dev3 dev1" ] || fail "static pair: $(members pair)"
# A dynamic collection follows the devices: tag dev1 and it joins.
mirage device tag dev1 --add lab >/dev/null
[ "$(members lab)" = "dev1 dev2" ] || fail "lab after tagging dev1: $(members lab)"
expect_exit 0 mirage collection list --output json
expect_contains "$OUT" '"name":"webs"'
expect_exit 2 mirage collection create bad --device dev1 --hostname x
expect_exit 2 mirage collection create bad
expect_exit 3 mirage collection create bad --device nodev
expect_exit 2 mirage collection create bad --field novalue
expect_exit 3 mirage collection show nosuch
expect_exit 0 mirage device list --collection webs --output json
python3 -c 'import json,sys; d=[x["device_id"] for x in json.loads(sys.argv[1])["devices"]]; assert d == ["dev1","dev2"], d' "$OUT" ||
  fail "device list --collection: $OUT"
# Policies by collection.
echo '{"retention": {"daily": 30}}' >"$TEST_TMP/p.json"
mirage policy set web-policy --file "$TEST_TMP/p.json" >/dev/null
expect_exit 0 mirage policy assign web-policy --collection webs --output json
expect_contains "$OUT" '"devices":["dev1","dev2"]'
expect_exit 0 mirage policy list --output json
python3 -c '
import json,sys
p={x["name"]: x["devices"] for x in json.loads(sys.argv[1])["policies"]}
assert p == {"default": 1, "web-policy": 2}, p' "$OUT" || fail "policy list: $OUT"
expect_exit 3 mirage policy assign nosuch --device dev1
expect_exit 2 mirage policy assign web-policy
mirage collection create empty --hostname 'none-*' >/dev/null
expect_exit 5 mirage policy assign web-policy --collection empty
# Orders by collection: a base for the webs and the static pair (dev1 once).
mkdir -p "$TEST_TMP/base/etc"; echo layered >"$TEST_TMP/base/etc/motd"
mirage-capture base --root "$TEST_TMP/base" --name fbase >/dev/null
expect_exit 0 mirage-assign --collection webs --collection pair --base fbase --output json
python3 -c 'import json,sys; d=sorted(o["device_id"] for o in json.loads(sys.argv[1])["orders"]); assert d == ["dev1","dev2","dev3"], d' "$OUT" ||
  fail "assign by collection: $OUT"
expect_exit 0 mirage-centralize request --collection lab --output json
expect_contains "$OUT" '"reason":"requested"'
for i in 1 2 3; do mirage-centralize --root "$TEST_TMP/src$i" --device-id "dev$i" >/dev/null; done
for i in 1 2 3; do [ "$(cat "$TEST_TMP/src$i/etc/motd")" = layered ] || fail "dev$i did not get the base"; done
# Volumes: a new one; with the first read-only, new CVDs and their uploads go to it.
expect_exit 0 mirage volume list --output json
expect_contains "$OUT" '"volume_id":1'
expect_exit 0 mirage volume add "$TEST_TMP/vol2" --create --output json
expect_contains "$OUT" '"volume_id":2'
expect_exit 5 mirage volume add "$TEST_TMP/vol2"
# The same directory by another name (a symlink, a trailing slash) is the same volume.
ln -s "$TEST_TMP/vol2" "$TEST_TMP/vol2-link"
expect_exit 5 mirage volume add "$TEST_TMP/vol2-link"
expect_contains "$ERR" "is already volume 2"
expect_exit 5 mirage volume add "$TEST_TMP/vol2/"
expect_exit 0 mirage volume set 1 --read-only --output json
expect_exit 5 mirage volume set 2 --read-only
expect_exit 2 mirage volume set 2
mk 4 new-01
centralize_accepted "$TEST_TMP/src4" dev4 >/dev/null
[ -n "$(find "$TEST_TMP/vol2/packs" -name '*.pack' -size +100k)" ] || fail "dev4's data did not go to volume 2"
expect_exit 0 mirage device list --output json
python3 -c 'import json,sys; v={d["device_id"]: d["volume"] for d in json.loads(sys.argv[1])["devices"]}; assert v["dev4"] == 2 and v["dev1"] == 1, v' "$OUT" ||
  fail "placement: $OUT"
expect_exit 0 mirage volume list --output json
python3 -c '
import json,sys
v={x["volume_id"]: x for x in json.loads(sys.argv[1])["volumes"]}
assert v[1]["read_only"] and not v[2]["read_only"] and v[2]["devices"] == 1 and v[2]["packs"] >= 1, v
assert v[2]["free_bytes"] > 0' "$OUT" || fail "volume list: $OUT"
# A server given the volumes reads all of them: restore each device, check everything.
mirage volume set 1 --writable >/dev/null
expect_exit 0 mirage check --read-data --output json
for i in 1 4; do
  rm -rf "$TEST_TMP/back$i"; mirage-restore --device "dev$i" --path /etc --to "$TEST_TMP/back$i" >/dev/null
  cmp "$TEST_TMP/src$i/etc/own.bin" "$TEST_TMP/back$i/etc/own.bin" || fail "dev$i restored wrong"
done
if [ "$(id -u)" = 0 ] && command -v mount >/dev/null; then
  # Most free space wins: a 64 MiB tmpfs against this filesystem, then against a 512 MiB one.
  mkdir -p "$TEST_TMP/small" "$TEST_TMP/big"
  if mount -t tmpfs -o size=64m tmpfs "$TEST_TMP/small" 2>/dev/null; then
    mount -t tmpfs -o size=512m tmpfs "$TEST_TMP/big"
    trap 'umount "$TEST_TMP/small" "$TEST_TMP/big" 2>/dev/null; cleanup' EXIT
    mirage volume add "$TEST_TMP/small" >/dev/null; mirage volume add "$TEST_TMP/big" >/dev/null
    mirage volume set 1 --read-only >/dev/null; mirage volume set 2 --read-only >/dev/null
    mk 5 new-02
    centralize_accepted "$TEST_TMP/src5" dev5 >/dev/null
    [ -n "$(find "$TEST_TMP/big/packs" -name '*.pack' -size +100k)" ] || fail "dev5 did not go to the volume with most free space"
    [ -z "$(find "$TEST_TMP/small/packs" -name '*.pack' -size +100k)" ] || fail "dev5 went to the smaller volume"
    mirage volume set 1 --writable >/dev/null
  fi
fi
# The audit journal names every change and who made it; the transaction log has bytes.
expect_exit 0 mirage events --type audit --output json
for m in device.tag collection.set policy.set policy.assign order.create snapshot.request volume.add volume.set; do
  expect_contains "$OUT" "\"method\":\"$m\""
done
expect_contains "$OUT" '"by":"local"'
case "$OUT" in *'"method":"device.list"'*|*'"method":"chunks.put"'*) fail "reads or uploads in the audit journal" ;; esac
expect_exit 0 mirage events --device dev1 --type snapshot --output json
python3 - "$OUT" <<'PY'
import json, sys
ev = [json.loads(l) for l in sys.argv[1].splitlines()]
kinds = [e["detail"]["transaction"] for e in ev if e["type"] == "snapshot.created"]
assert kinds[0] == "centralize" and set(kinds[1:]) == {"upload"}, kinds
first = ev[0]["detail"]
assert first["unique_bytes"] >= 200000 and first["bytes_moved"] > 0, first
PY
[ $? = 0 ] || fail "transaction log"
expect_exit 0 mirage events --device dev1 --type order.done --output json
expect_contains "$OUT" '"transaction":"layer_update"'
expect_contains "$OUT" '"bytes_moved"'
expect_exit 0 mirage collection delete pair --output json
expect_exit 3 mirage collection delete pair
# mirage-serverd --volume DIR makes and registers a volume (once, however often it starts).
mirage-serverd --volume "$TEST_TMP/vol-flag" --stdio </dev/null
mirage-serverd --volume "$TEST_TMP/vol-flag" --stdio </dev/null
[ -d "$TEST_TMP/vol-flag/packs" ] || fail "--volume did not make the volume's packs directory"
[ "$(stat -c %a "$TEST_TMP/vol-flag")" = 700 ] || fail "--volume made its directory with mode $(stat -c %a "$TEST_TMP/vol-flag")"
n=$(mirage volume list --output json | python3 -c 'import json,sys; print(sum(v["path"] == sys.argv[1] for v in json.load(sys.stdin)["volumes"]))' "$TEST_TMP/vol-flag")
[ "$n" = 1 ] || fail "--volume registered the volume $n times"
echo ok

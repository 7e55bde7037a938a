#!/usr/bin/env bash
# Layers on small synthetic trees: capture base and app, assign, the 3-way rules
# (local /etc change kept, both changed -> .mirage-local, user files and user-installed
# files kept, identity kept, dropped files removed), merge drivers for dpkg status and
# accounts, enforce, render, dry run, status and events.
source "$(dirname "$0")/lib.sh"
need python3
T=$TEST_TMP

mkroot() {  # a tiny "distribution"
  local r=$1
  mkdir -p "$r"/{etc/default,usr/bin,usr/share/doc/base,var/lib/dpkg/info,home,root,tmp,var/log}
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\ndaemon:x:1:\n' >"$r/etc/group"
  printf 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n' >"$r/etc/shadow"; chmod 640 "$r/etc/shadow"
  printf 'Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4\n\nPackage: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.1-1\n\n' >"$r/var/lib/dpkg/status"
  printf 'base config v1\n' >"$r/etc/base.conf"
  printf 'tool config v1\n' >"$r/etc/tool.conf"
  printf 'both v1\n' >"$r/etc/both.conf"
  printf '#!/bin/sh\necho ls\n' >"$r/usr/bin/ls"; chmod 755 "$r/usr/bin/ls"
  head -c 300000 /dev/urandom >"$r/usr/bin/big"; chmod 755 "$r/usr/bin/big"
  printf 'old doc\n' >"$r/usr/share/doc/base/dropped.txt"
  printf 'ref-host\n' >"$r/etc/hostname"
  printf '0123456789abcdef0123456789abcdef\n' >"$r/etc/machine-id"
  printf 'syslog noise\n' >"$r/var/log/syslog"
}

ref=$T/ref; mkroot "$ref"
mirage-capture base --root "$ref" --name deb --output json >"$T/base1.json"
expect_contains "$(cat "$T/base1.json")" '"ref":"deb@1"'

# Endpoint: the base plus a user, user files, a user-installed program, its own identity,
# local edits under /etc.
ep=$T/ep; cp -a "$ref" "$ep"
printf 'ep-host\n' >"$ep/etc/hostname"
printf 'ffffffffffffffffffffffffffffffff\n' >"$ep/etc/machine-id"
printf 'alice:x:1000:1000::/home/alice:/bin/sh\n' >>"$ep/etc/passwd"
printf 'alice:x:1000:\n' >>"$ep/etc/group"
printf 'alice:!:19000:0:99999:7:::\n' >>"$ep/etc/shadow"
mkdir -p "$ep/home/alice"; head -c 100000 /dev/urandom >"$ep/home/alice/thesis.pdf"
printf 'Package: userpkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n' >>"$ep/var/lib/dpkg/status"
printf 'user program\n' >"$ep/usr/bin/userprog"
printf 'tool config LOCAL\n' >"$ep/etc/tool.conf"
printf 'both LOCAL\n' >"$ep/etc/both.conf"
cp -a "$ep/home/alice" "$T/alice-before"

# The base v2: changes base.conf and both.conf, drops a doc, changes the big binary a little.
ref2=$T/ref2; cp -a "$ref" "$ref2"
printf 'base config v2\n' >"$ref2/etc/base.conf"
printf 'both v2\n' >"$ref2/etc/both.conf"
rm "$ref2/usr/share/doc/base/dropped.txt"
printf 'patch' | dd of="$ref2/usr/bin/big" bs=1 seek=1000 conv=notrunc status=none
sed -i 's/Version: 9.1-1/Version: 9.1-2/' "$ref2/var/lib/dpkg/status"
mirage-capture base --root "$ref2" --name deb --output json >/dev/null

# An app layer: a package with a system user (uid 100, which the endpoint gives to someone else).
after=$T/after; cp -a "$ref2" "$after"
printf '#!/bin/sh\necho hello from app\n' >"$after/usr/bin/app"; chmod 755 "$after/usr/bin/app"
mkdir -p "$after/var/lib/app"; printf 'state\n' >"$after/var/lib/app/data"
printf 'app:x:100:100:App:/var/lib/app:/usr/sbin/nologin\n' >>"$after/etc/passwd"
printf 'app:x:100:\n' >>"$after/etc/group"
printf 'app:!:19000::::::\n' >>"$after/etc/shadow"
if [ "$(id -u)" = 0 ]; then chown 100:100 "$after/var/lib/app/data"; fi
printf 'Package: app\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.0\n\n' >>"$after/var/lib/dpkg/status"
printf 'noise\n' >>"$after/var/log/syslog"
mkdir -p "$after/etc/mirage/post-layer.d"
printf '#!/bin/sh\necho ran >>/var/lib/app/hook-ran\n' >"$after/etc/mirage/post-layer.d/10-app"
chmod 755 "$after/etc/mirage/post-layer.d/10-app"
expect_exit 0 mirage-capture app --before-root "$ref2" --after-root "$after" --name app --on-base deb@2 --output json
expect_contains "$OUT" '"ref":"app@1"'
expect_contains "$OUT" '"captured_on":"deb@2"'

# The endpoint's uid 100 belongs to a local account.
printf 'localsvc:x:100:100::/:/bin/false\n' >>"$ep/etc/passwd"
printf 'localsvc:x:100:\n' >>"$ep/etc/group"

centralize_accepted "$ep" ep1 >/dev/null
mirage-capture list --output json >"$T/list.json"
expect_contains "$(cat "$T/list.json")" '"ref":"deb@2"'

# Give the endpoint deb@1 first (its "O"), then deb@2 + app.
mirage-assign --device ep1 --base deb@1 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep1 --output json >"$T/c1.json"
expect_contains "$(cat "$T/c1.json")" '"order"'
[ "$(cat "$ep/etc/tool.conf")" = "tool config LOCAL" ] || fail "first assignment overwrote a local /etc edit"

expect_exit 0 mirage-assign --device ep1 --base deb@2 --app app --dry-run --output json
expect_contains "$OUT" '"path":"/usr/share/doc/base/dropped.txt"'
expect_contains "$OUT" '"action":"remove"'
[ -e "$ep/usr/share/doc/base/dropped.txt" ] || fail "dry run changed the endpoint"

mirage-assign --device ep1 --base deb@2 --app app --output json >"$T/order.json"
expect_contains "$(cat "$T/order.json")" '"state":"pending"'
mirage-centralize --root "$ep" --device-id ep1 --output json >"$T/c2.json"
expect_contains "$(cat "$T/c2.json")" '"protected_by"'

[ "$(cat "$ep/etc/base.conf")" = "base config v2" ] || fail "layer change not applied"
[ "$(cat "$ep/etc/tool.conf")" = "tool config LOCAL" ] || fail "local /etc change lost"
[ "$(cat "$ep/etc/both.conf")" = "both v2" ] || fail "both-changed file: layer should win"
[ "$(cat "$ep/etc/both.conf.mirage-local")" = "both LOCAL" ] || fail "both-changed file: local copy not kept"
[ ! -e "$ep/usr/share/doc/base/dropped.txt" ] || fail "dropped file not removed"
cmp "$ep/usr/bin/big" "$ref2/usr/bin/big" || fail "changed binary differs"
[ "$(cat "$ep/etc/hostname")" = ep-host ] || fail "hostname overwritten"
grep -q ffffffff "$ep/etc/machine-id" || fail "machine-id overwritten"
[ -e "$ep/usr/bin/userprog" ] || fail "user-installed file removed"
expect_same_tree "$T/alice-before" "$ep/home/alice"
[ "$("$ep/usr/bin/app")" = "hello from app" ] || fail "app binary missing"
grep -q '^Package: userpkg' "$ep/var/lib/dpkg/status" || fail "user package record lost"
grep -q '^Package: app' "$ep/var/lib/dpkg/status" || fail "app package record missing"
grep -q 'Version: 9.1-2' "$ep/var/lib/dpkg/status" || fail "base package update missing"
grep -q '^alice:' "$ep/etc/passwd" || fail "user account lost"
grep -q '^localsvc:x:100:' "$ep/etc/passwd" || fail "local account changed"
appuid=$(awk -F: '$1=="app"{print $3}' "$ep/etc/passwd")
[ -n "$appuid" ] && [ "$appuid" != 100 ] || fail "uid clash not remapped (app uid '$appuid')"
if [ "$(id -u)" = 0 ]; then
  [ "$(stat -c %u "$ep/var/lib/app/data")" = "$appuid" ] || fail "app files do not follow the remapped uid"
  # The hook runs in a chroot of the endpoint, which has no /bin/sh here: it fails and
  # stays pending for the next sync (the debootstrap test sees one succeed).
  expect_contains "$(cat "$T/c2.json")" '"hook":"10-app","status":127'
fi
grep -q 'syslog noise' "$ep/var/log/syslog" && ! grep -q '^noise' "$ep/var/log/syslog" || fail "noise applied"

# Status and events.
expect_exit 0 mirage-assign status --device ep1 --output json
expect_contains "$OUT" '"app@1"'
expect_contains "$OUT" '"state":"done"'
expect_exit 0 mirage events --device ep1
expect_contains "$OUT" '"type":"order.done"'

# A second sync with nothing queued changes nothing.
cp "$ep/etc/passwd" "$T/passwd.before"
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null
cmp "$ep/etc/passwd" "$T/passwd.before" || fail "an idle sync changed /etc/passwd"

# Enforce: a deleted and a corrupted layer file come back; a local /etc edit too.
rm "$ep/usr/bin/ls"
printf 'garbage' | dd of="$ep/usr/bin/big" bs=1 seek=5 conv=notrunc status=none
mirage-assign --device ep1 --enforce --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep1 --output json >"$T/c3.json"
cmp "$ep/usr/bin/ls" "$ref2/usr/bin/ls" || fail "enforce did not restore a deleted file"
cmp "$ep/usr/bin/big" "$ref2/usr/bin/big" || fail "enforce did not repair a corrupted file"
[ -e "$ep/usr/bin/userprog" ] || fail "enforce without --remove-user-apps removed a user file"
expect_same_tree "$T/alice-before" "$ep/home/alice"

# Enforce with --remove-user-apps removes the user's program, never the user area.
mirage-assign --device ep1 --enforce --remove-user-apps --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null
[ ! -e "$ep/usr/bin/userprog" ] || fail "--remove-user-apps kept a user-installed file"
expect_same_tree "$T/alice-before" "$ep/home/alice"

# Render: the composed image, with full metadata, equals the app's reference (less
# identity, logs and what layers leave out).
expect_exit 0 mirage-assign render --base deb@2 --app app --to "$T/render" --output json
cmp "$T/render/usr/bin/app" "$after/usr/bin/app" || fail "render: app binary differs"
cmp "$T/render/usr/bin/big" "$after/usr/bin/big" || fail "render: big differs"
cmp "$T/render/var/lib/dpkg/status" "$after/var/lib/dpkg/status" || fail "render: dpkg status differs"
cmp "$T/render/etc/passwd" "$after/etc/passwd" || fail "render: passwd differs"
[ ! -e "$T/render/etc/hostname" ] || fail "render: identity leaked into the image"
expect_same_tree "$after/usr" "$T/render/usr"
expect_exit 5 mirage-assign render --base deb@2 --to "$T/render"
expect_contains "$ERR" "not empty"

# Downgrades show in a dry run, compared the way dpkg does.
expect_exit 0 mirage-assign --device ep1 --base deb@1 --dry-run --output json
expect_contains "$OUT" '"change":"downgrade","from":"9.1-2","package":"coreutils:amd64","to":"9.1-1"'

# --wait blocks until the endpoint has carried the order out.
mirage-assign --device ep1 --base deb@2 --app app --wait --timeout 60 --output json >"$T/wait.json" &
waiter=$!
sleep 0.5
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null
wait "$waiter" || fail "--wait did not succeed"
expect_contains "$(cat "$T/wait.json")" '"state":"done"'

# A reference device: base --from it, and an app layer by begin / install / sync / finish.
refdev=$T/refdev; cp -a "$ref2" "$refdev"
expect_exit 5 mirage-centralize --root "$refdev" --device-id refdev --output json
mirage-centralize accept refdev --reference --output json >/dev/null
mirage-centralize --root "$refdev" --device-id refdev --output json >/dev/null
expect_exit 0 mirage-capture base --from refdev --name fromdev --output json
expect_contains "$OUT" '"ref":"fromdev@1"'
expect_exit 5 mirage-capture app begin --from ep1
expect_contains "$ERR" "not a reference device"
mirage-capture app begin --from refdev --output json >/dev/null
printf '#!/bin/sh\necho tool\n' >"$refdev/usr/bin/tool2"; chmod 755 "$refdev/usr/bin/tool2"
rm "$refdev/usr/bin/ls"
expect_exit 5 mirage-capture app finish --from refdev --name tool2
expect_contains "$ERR" "no snapshot since"
mirage-centralize --root "$refdev" --device-id refdev --output json >/dev/null
expect_exit 0 mirage-capture app finish --from refdev --name tool2 --on-base deb@2 --output json
expect_contains "$OUT" '"ref":"tool2@1"'
expect_contains "$OUT" '"whiteouts":1'

# A driver profile matching this machine's architecture joins the base.
drv=$T/drv; mkdir -p "$drv/lib/firmware/acme"; printf 'fw' >"$drv/lib/firmware/acme/fw.bin"
expect_exit 2 mirage-capture driver --root "$drv" --name acme --match 'novalue'
mirage-capture driver --root "$drv" --name acme --match "arch=$(uname -m)" --output json >/dev/null
mirage-capture driver --root "$drv" --name other --match "sys_vendor=NoSuchVendor*" --output json >/dev/null
rm -rf "$drv/lib/firmware/acme"; mkdir -p "$drv/lib/firmware/other"
expect_exit 0 mirage-assign --device ep1 --base deb@2 --output json
expect_contains "$OUT" '"acme@1"'
case "$OUT" in *'"other@1"'*) fail "a driver profile for other hardware was assigned" ;; esac
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null
[ "$(cat "$ep/lib/firmware/acme/fw.bin")" = fw ] || fail "driver profile files not applied"

# An app layer goes over another base than it was captured on: a warning.
expect_exit 0 mirage-assign --device ep1 --base fromdev --app app --dry-run --output json
expect_contains "$OUT" 'was captured on deb@2, not on fromdev@1'

# Provision: the machine area is cleaned (the user's program goes), exactly the given
# layers are applied (the earlier app layer is not kept), the user area stays.
printf 'mine\n' >"$ep/usr/bin/userprog2"
mirage-assign --device ep1 --provision --base deb@2 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null
[ ! -e "$ep/usr/bin/userprog2" ] || fail "provision kept a user-installed file"
[ ! -e "$ep/usr/bin/app" ] || fail "provision kept an app layer it was not given"
! grep -q '^Package: app' "$ep/var/lib/dpkg/status" || fail "provision kept the app's package record"
cmp "$ep/usr/bin/big" "$ref2/usr/bin/big" || fail "provision: base file differs"
expect_same_tree "$T/alice-before" "$ep/home/alice"
[ "$(cat "$ep/etc/hostname")" = ep-host ] || fail "provision overwrote the hostname"
# It starts a new CVD: the snapshot after it is the first of CVD 2, the one before is pinned.
mirage-restore snapshots --device ep1 --output json >"$T/snaps.json"
python3 - "$T/snaps.json" <<'PY' || fail "provision did not start a new CVD"
import json, sys
s = json.load(open(sys.argv[1]))["snapshots"]
assert s[-1]["cvd"] == 2 and s[-2]["cvd"] == 1 and s[-2]["pinned"], [(x["cvd"], x["pinned"]) for x in s[-3:]]
assert all(x["cvd"] == 1 for x in s[:-1])
PY
expect_exit 0 mirage-assign status --device ep1 --output json
expect_contains "$OUT" '"cvd":2'

# Render as a tar stream.
mirage-assign render --base deb@2 --app app --to - >"$T/image.tar"
tar -tf "$T/image.tar" >"$T/image.list"
grep -qx './usr/bin/app' "$T/image.list" || fail "render to stdout: no usr/bin/app in the tar"

# Errors.
expect_exit 3 mirage-assign --device ep1 --base nosuch
expect_exit 2 mirage-assign --device ep1 --base 'bad/name'
expect_exit 2 mirage-assign --device ep1 --app deb@2
expect_exit 2 mirage-capture base --name x
expect_exit 3 mirage-assign --device nodev --base deb

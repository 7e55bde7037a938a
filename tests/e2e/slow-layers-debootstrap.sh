#!/usr/bin/env bash
# Layers on real Debian trees: a base layer from a bookworm minbase root; an app layer
# from a copy in which a package that adds a system user and a service (uuid-runtime:
# user uuidd, uuidd.service) was installed with apt-get; an endpoint made from the base
# with a user, files in the user's home, a user-installed package (hello), its own
# hostname and machine-id, a local edit under /etc, and a local account holding the uid
# the app's user has on the reference. After assigning base and app: both packages are
# installed per dpkg, dpkg --audit is clean, the app's binary runs in a chroot, the
# user's files are byte-identical, identity and the /etc edit are kept, the app's user
# exists with a remapped uid that its files follow. Then base v2 drops a package,
# enforce repairs exactly what drifted, two conflicting app layers are reported, and
# kill -9 at random points during an apply leaves the endpoint consistent on rerun.
source "$(dirname "$0")/lib.sh"
need_root
need debootstrap python3 chroot
T=$TEST_TMP

ref=$T/ref
make_bookworm "$ref"
mkdir -p "$ref/etc/mirage/post-layer.d"
printf '#!/bin/sh\nldconfig\necho ok >/var/lib/mirage-hook-ran\n' >"$ref/etc/mirage/post-layer.d/10-ldconfig"
chmod 755 "$ref/etc/mirage/post-layer.d/10-ldconfig"
expect_exit 0 mirage-capture base --root "$ref" --name bookworm --output json
expect_contains "$OUT" '"ref":"bookworm@1"'

# The app layer: the reference before and after apt-get install uuid-runtime.
after=$T/after
cp -a "$ref" "$after"
chroot_install "$after" uuid-runtime
ref_uid=$(chroot "$after" id -u uuidd)
expect_exit 0 mirage-capture app --before-root "$ref" --after-root "$after" --name uuid --on-base bookworm@1 --output json
expect_contains "$OUT" '"ref":"uuid@1"'

# The endpoint: made from the base, then lived in.
ep=$T/ep
cp -a "$ref" "$ep"
rm "$ep/var/lib/mirage-hook-ran" 2>/dev/null || true
echo endpoint-7 >"$ep/etc/hostname"
echo 77777777777777777777777777777777 >"$ep/etc/machine-id"
echo "# local edit" >>"$ep/etc/bash.bashrc"
chroot "$ep" useradd -m -u 1000 -s /bin/bash alice
chroot "$ep" useradd -r -u "$ref_uid" -M localsvc
mkdir -p "$ep/home/alice/docs"
head -c 2000000 /dev/urandom >"$ep/home/alice/docs/thesis.pdf"
printf 'notes\n' >"$ep/home/alice/notes.txt"
chroot "$ep" chown -R alice:alice /home/alice
chroot_install "$ep" hello
cp -a "$ep/home/alice" "$T/alice-before"
bashrc_before=$(cat "$ep/etc/bash.bashrc")

centralize_accepted "$ep" ep-deb >/dev/null
mirage-assign --device ep-deb --base bookworm@1 --app uuid@1 --output json >/dev/null
expect_exit 0 mirage-centralize --root "$ep" --device-id ep-deb --output json
expect_contains "$OUT" '"protected_by"'

chroot "$ep" dpkg -s uuid-runtime >/dev/null || fail "dpkg -s uuid-runtime fails after the apply"
chroot "$ep" dpkg -s hello >/dev/null || fail "the user's package hello is gone from dpkg"
[ -z "$(chroot "$ep" dpkg --audit)" ] || { chroot "$ep" dpkg --audit >&2; fail "dpkg --audit is not clean"; }
chroot "$ep" uuidgen | grep -Eq '^[0-9a-f-]{36}$' || fail "the app's binary does not run"
chroot "$ep" hello | grep -q 'Hello, world' || fail "the user's program does not run"
expect_same_tree "$T/alice-before" "$ep/home/alice"
[ "$(cat "$ep/etc/hostname")" = endpoint-7 ] || fail "hostname overwritten"
[ "$(cat "$ep/etc/machine-id")" = 77777777777777777777777777777777 ] || fail "machine-id overwritten"
[ "$(cat "$ep/etc/bash.bashrc")" = "$bashrc_before" ] || fail "the local /etc edit was lost"
uid=$(chroot "$ep" id -u uuidd) || fail "the app's system user does not exist"
[ "$uid" != "$ref_uid" ] || fail "uid clash with localsvc not remapped"
[ "$(chroot "$ep" id -u localsvc)" = "$ref_uid" ] || fail "the local account lost its uid"
[ "$(stat -c %u "$ep/var/lib/libuuid")" = "$uid" ] || fail "the app's files do not follow the remapped uid"
[ -e "$ep/var/lib/mirage-hook-ran" ] || fail "the post-layer hook did not run"

# Base v2 drops a package (and its files); the endpoint follows.
ref2=$T/ref2
cp -a "$ref" "$ref2"
chroot "$ref2" dpkg --purge --force-remove-essential --force-depends bsdutils >/dev/null 2>&1 || \
  chroot "$ref2" dpkg --purge e2fsprogs >/dev/null
gone=$(comm -23 <(chroot "$ref" dpkg-query -W -f '${Package}\n' | sort) <(chroot "$ref2" dpkg-query -W -f '${Package}\n' | sort))
[ -n "$gone" ] || fail "test setup: base v2 dropped nothing"
chroot "$ref" dpkg -L "$gone" | while read -r f; do [ -f "$ref$f" ] && [ ! -e "$ref2$f" ] && echo "$f"; done >"$T/gone.txt" || true
gone_file=$(sed -n 1p "$T/gone.txt")
[ -n "$gone_file" ] || fail "test setup: $gone left no file behind"
mirage-capture base --root "$ref2" --name bookworm --output json >/dev/null
mirage-assign --device ep-deb --base bookworm@2 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null
[ ! -e "$ep$gone_file" ] || fail "$gone_file of dropped package $gone is still there"
! chroot "$ep" dpkg -s "$gone" >/dev/null 2>&1 || fail "dropped package $gone still in dpkg status"
chroot "$ep" dpkg -s uuid-runtime >/dev/null || fail "uuid-runtime lost on the base update"
chroot "$ep" dpkg -s hello >/dev/null || fail "hello lost on the base update"

# Enforce: once to settle local /etc changes (enforce puts those back too), then delete
# one layer file and corrupt another: exactly those two come back.
mirage-assign --device ep-deb --enforce --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null
rm "$ep/usr/bin/uuidgen"
printf 'XXXX' | dd of="$ep/usr/bin/ls" bs=1 seek=100 conv=notrunc status=none
expect_exit 0 mirage-assign --device ep-deb --enforce --output json
mirage-centralize --root "$ep" --device-id ep-deb --output json >"$T/enforce.json"
cmp "$ep/usr/bin/uuidgen" "$after/usr/bin/uuidgen" || fail "enforce did not bring back a deleted file"
cmp "$ep/usr/bin/ls" "$ref2/usr/bin/ls" || fail "enforce did not repair a corrupted file"
written=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["order"]["apply"]["written"])' "$T/enforce.json")
[ "$written" = 2 ] || fail "enforce wrote $written entries for 2 drifted files"

# Two app layers that bring the same path differently are reported at assignment.
a1=$T/a1; a2=$T/a2
cp -a "$ref2" "$a1"; cp -a "$ref2" "$a2"
echo one >"$a1/etc/shared.conf"; echo two >"$a2/etc/shared.conf"
mirage-capture app --before-root "$ref2" --after-root "$a1" --name one --output json >/dev/null
mirage-capture app --before-root "$ref2" --after-root "$a2" --name two --output json >/dev/null
expect_exit 0 mirage-assign --device ep-deb --app one --app two --dry-run --output json
expect_contains "$OUT" '"path":"/etc/shared.conf"'
expect_contains "$OUT" '"wins":"two@1"'

# kill -9 during an apply at random steps, then a rerun: consistent.
mirage-assign --device ep-deb --base bookworm@1 --output json >/dev/null
# First at chosen points of both phases (staging, commit), then with real kill -9 at
# random times.
set +e
# Before entry 1 or later: before entry 0 nothing is staged yet.
MIRAGE_TEST_CRASH_AT_STAGE=$((1 + RANDOM % 19)) mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null 2>&1
[ -z "$(find "$ep" -name '.mirage-new-*' | head -1)" ] && fail "the staging crash left no staged file (did it crash?)"
MIRAGE_TEST_CRASH_AT_STEP=0 mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null 2>&1
MIRAGE_TEST_CRASH_AT_STEP=$((RANDOM % 30)) mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null 2>&1
set -e
for i in 1 2 3; do
  mirage-assign --device ep-deb --base "bookworm@$(( (i % 2) + 1 ))" --output json >/dev/null
  mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
mirage-assign --device ep-deb --base bookworm@1 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep-deb --output json >/dev/null
[ -z "$(find "$ep" -name '.mirage-new-*' | head -1)" ] || fail "staged files left behind after recovery"
chroot "$ep" dpkg -s "$gone" >/dev/null || fail "bookworm@1's $gone not back after the interrupted apply"
[ -e "$ep$gone_file" ] || fail "$gone_file not back after the interrupted apply"
cmp "$ep$gone_file" "$ref$gone_file" || fail "$gone_file differs after the interrupted apply"
[ -z "$(chroot "$ep" dpkg --audit)" ] || fail "dpkg --audit not clean after the interrupted apply"
expect_same_tree "$T/alice-before" "$ep/home/alice"
expect_exit 0 mirage check --read-data --output json
echo ok

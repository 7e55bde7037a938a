#!/usr/bin/env bash
# The OS migration on real trees: a bookworm minbase endpoint (debootstrap, cached) lived
# in: a user (uid 1000) and her files, a local admin in sudo, a NetworkManager connection,
# a CUPS printers.conf, a user crontab, a local systemd unit enabled, a third-party apt
# source, a DSA host key, packages the user installed with apt (sudo, hello); a trixie
# base captured from `debootstrap trixie`. `check` reports the third-party source and the
# DSA key; the migration (forced past them) gives: /etc/debian_version 13, dpkg --audit
# clean and apt-get check passing in a chroot, the user's files byte-identical with her
# uid, the admin's `sudo -l`, the carried files (sudoers valid by visudo -c; a broken
# sudoers.d file renamed .mirage-local and reported; an enablement of a unit trixie has
# nowhere not carried and reported), the DSA key
# gone and reported, the user's packages installed again from trixie (or reported),
# hostname and machine-id kept, /old-root/<id> holding the old system. Rollback gives
# the bookworm system area back with a file made after the migration kept. Two more
# endpoints migrated by --collection, one killed (kill -9, the test crash points) at a
# random point of the linking and of the apply, then finished by a rerun.
source "$(dirname "$0")/lib.sh"
need_root
need debootstrap python3 chroot
T=$TEST_TMP

old=$T/bookworm; make_bookworm "$old"
expect_exit 0 mirage-capture base --root "$old" --name bookworm --output json
new=$T/trixie; make_trixie "$new"
expect_exit 0 mirage-capture base --root "$new" --name trixie --output json
grep -q '^13' "$new/etc/debian_version" || fail "the trixie root is not Debian 13"

# The endpoint, lived in.
ep=$T/ep; cp -a "$old" "$ep"
echo pc-ana >"$ep/etc/hostname"
echo 12121212121212121212121212121212 >"$ep/etc/machine-id"
chroot_install "$ep" sudo hello
chroot "$ep" useradd -m -u 1000 -s /bin/bash alice
chroot "$ep" useradd -m -u 1001 -s /bin/bash -G sudo admin
mkdir -p "$ep/home/alice/docs"; head -c 3000000 /dev/urandom >"$ep/home/alice/docs/thesis.pdf"
printf 'notes\n' >"$ep/home/alice/notes.txt"
chroot "$ep" chown -R alice:alice /home/alice
cp -a "$ep/home/alice" "$T/alice-before"
mkdir -p "$ep/etc/NetworkManager/system-connections" "$ep/etc/cups" "$ep/var/spool/cron/crontabs" "$ep/etc/ssh"
printf '[connection]\nid=office\ntype=ethernet\n' >"$ep/etc/NetworkManager/system-connections/office.nmconnection"
chmod 600 "$ep/etc/NetworkManager/system-connections/office.nmconnection"
printf '<Printer laser>\nDeviceURI ipp://printer.local/ipp\n</Printer>\n' >"$ep/etc/cups/printers.conf"
printf '0 * * * * echo hi\n' >"$ep/var/spool/cron/crontabs/alice"
printf 'admin ALL=(ALL) NOPASSWD: /usr/bin/true\n' >"$ep/etc/sudoers.d/admin-true"; chmod 440 "$ep/etc/sudoers.d/admin-true"
printf 'admin ALL=(ALL NOPASSWD /bin/true\n' >"$ep/etc/sudoers.d/broken"; chmod 440 "$ep/etc/sudoers.d/broken"
printf '[Unit]\nDescription=local\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n' \
  >"$ep/etc/systemd/system/local.service"
mkdir -p "$ep/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/local.service "$ep/etc/systemd/system/multi-user.target.wants/local.service"
ln -sf /lib/systemd/system/vendor-agent.service "$ep/etc/systemd/system/multi-user.target.wants/vendor-agent.service"
echo "deb https://repo.vendor.example/apt bookworm stable" >"$ep/etc/apt/sources.list.d/vendor.list"
printf 'dsa key\n' >"$ep/etc/ssh/ssh_host_dsa_key"; printf 'dsa pub\n' >"$ep/etc/ssh/ssh_host_dsa_key.pub"
printf 'ed25519 key\n' >"$ep/etc/ssh/ssh_host_ed25519_key"
centralize_accepted "$ep" pc-ana >/dev/null
mirage-assign --device pc-ana --base bookworm@1 --output json >/dev/null
mirage-centralize --root "$ep" --device-id pc-ana --output json >/dev/null

expect_exit 5 mirage-migrate check --device pc-ana --base trixie --output json
expect_contains "$OUT" '"apt.unmappable-source"'
expect_contains "$OUT" '"ssh.dsa-host-key"'
# The old base's libraries trixie renamed (libapt-pkg6.0, libgnutls30) are replaced, not
# missing: the user's sudo and hello have candidates.
case "$OUT" in *'"packages.no-candidate"'*) fail "no-candidate on a device given bookworm: $OUT" ;; esac
expect_exit 0 mirage-migrate --device pc-ana --base trixie --force --dry-run --output json
expect_contains "$OUT" '"change":"reinstall"'
expect_exit 0 mirage-migrate --device pc-ana --base trixie --force --output json
mid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["orders"][0]["spec"]["migration_id"])' <<<"$OUT")
expect_exit 0 mirage-centralize --root "$ep" --device-id pc-ana --output json
R=$OUT

grep -q '^13' "$ep/etc/debian_version" || fail "debian_version: $(cat "$ep/etc/debian_version")"
[ -z "$(chroot "$ep" dpkg --audit)" ] || { chroot "$ep" dpkg --audit >&2; fail "dpkg --audit is not clean"; }
chroot "$ep" apt-get check >/dev/null || fail "apt-get check fails"
expect_same_tree "$T/alice-before" "$ep/home/alice"
[ "$(stat -c %u "$ep/home/alice/docs/thesis.pdf")" = 1000 ] || fail "alice's files changed owner"
[ "$(chroot "$ep" id -u alice)" = 1000 ] || fail "alice's uid changed"
[ "$(cat "$ep/etc/hostname")" = pc-ana ] && grep -q 1212 "$ep/etc/machine-id" || fail "identity"
[ ! -e "$ep/etc/ssh/ssh_host_dsa_key" ] && [ -e "$ep/etc/ssh/ssh_host_ed25519_key" ] || fail "host keys"
for f in etc/NetworkManager/system-connections/office.nmconnection etc/cups/printers.conf \
  var/spool/cron/crontabs/alice etc/sudoers.d/admin-true etc/systemd/system/local.service; do
  [ -e "$ep/$f" ] || fail "not carried: /$f"
done
[ ! -e "$ep/etc/apt/sources.list.d/vendor.list" ] || fail "the third-party source was carried"
[ -L "$ep/etc/systemd/system/multi-user.target.wants/local.service" ] || fail "the local unit's enablement"
[ ! -L "$ep/etc/systemd/system/multi-user.target.wants/vendor-agent.service" ] || fail "a dangling enablement carried"
python3 - "$R" <<'PY' || fail "report: $R"
import json, sys
r = json.loads(sys.argv[1])["order"]
assert sorted(r["removed_identity"]) == ["/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"], r
re = {p["package"]: p for p in r["reinstalled"]}
assert set(re) >= {"sudo", "hello"}, re
assert r["dangling_enablement"] == ["/etc/systemd/system/multi-user.target.wants/vendor-agent.service"], r
su = r["sudoers"]
print("sudoers:", json.dumps(su), file=sys.stderr)
if re["sudo"]["installed"]:  # trixie's base has no sudo: checked once apt put the user's back
    assert su["after_packages"] and "/etc/sudoers.d/admin-true" in su["checked"], su
    [d] = su["disabled"]
    assert d["path"] == "/etc/sudoers.d/broken" and "syntax error" in d["message"], d
print("reinstalled:", json.dumps(r["reinstalled"]), file=sys.stderr)
PY
if chroot "$ep" dpkg -s hello >/dev/null 2>&1; then
  chroot "$ep" dpkg -s sudo | grep -q '^Status: install ok installed' || fail "sudo not installed again"
  [ -e "$ep/etc/sudoers.d/broken.mirage-local" ] && [ ! -e "$ep/etc/sudoers.d/broken" ] || fail "broken sudoers active"
  chroot "$ep" visudo -c >/dev/null || fail "visudo -c fails on the carried sudoers"
  chroot "$ep" sudo -l -U admin | grep -q '/usr/bin/true' || fail "the admin's sudo rules are gone"
else
  expect_contains "$R" '"installed":false'  # reported, with the reason
fi
grep -q '^12' "$ep/old-root/$mid/etc/debian_version" || fail "/old-root/$mid lacks the old system"

# Rollback: bookworm's system area back, a file made after the migration kept.
printf 'after\n' >"$ep/home/alice/after.txt"
expect_exit 0 mirage-migrate --rollback --device pc-ana --output json
expect_exit 0 mirage-centralize --root "$ep" --device-id pc-ana --output json
grep -q '^12' "$ep/etc/debian_version" || fail "rollback: $(cat "$ep/etc/debian_version")"
[ -e "$ep/etc/ssh/ssh_host_dsa_key" ] && [ "$(cat "$ep/home/alice/after.txt")" = after ] || fail "rollback"
[ -z "$(chroot "$ep" dpkg --audit)" ] || fail "dpkg --audit after the rollback"
chroot "$ep" hello >/dev/null || fail "the user's program after the rollback"

# Two endpoints by --collection; one killed at random points, then finished.
for n in 2 3; do
  cp -a "$old" "$T/ep$n"; echo "pc-$n" >"$T/ep$n/etc/hostname"
  centralize_accepted "$T/ep$n" pc-$n >/dev/null
done
mirage collection create lab --device pc-2 --device pc-3 >/dev/null
# Never given a base: the preflight tells bookworm's own packages trixie lacks (renamed
# libraries, all dependencies or required) from ones a user chose; none inhibits.
expect_exit 0 mirage-migrate check --device pc-2 --base trixie --output json
expect_contains "$OUT" '"packages.replaced"'
expect_contains "$OUT" '"libapt-pkg6.0"'
expect_exit 0 mirage-migrate --collection lab --base trixie --output json
link=$((RANDOM % 2000)); step=$((RANDOM % 2000))
echo "crash points: link $link, apply step $step" >&2
set +e
MIRAGE_TEST_CRASH_AT_LINK=$link mirage-centralize --root "$T/ep2" --device-id pc-2 --output json >/dev/null 2>&1
MIRAGE_TEST_CRASH_AT_STEP=$step mirage-centralize --root "$T/ep2" --device-id pc-2 --output json >/dev/null 2>&1
set -e
for n in 2 3; do
  expect_exit 0 mirage-centralize --root "$T/ep$n" --device-id pc-$n --output json
  grep -q '^13' "$T/ep$n/etc/debian_version" || fail "pc-$n not migrated"
  [ -z "$(chroot "$T/ep$n" dpkg --audit)" ] || fail "pc-$n: dpkg --audit"
  [ "$(cat "$T/ep$n/etc/hostname")" = "pc-$n" ] || fail "pc-$n hostname"
done
echo ok

#!/usr/bin/env bash
# The OS migration on small synthetic trees (no debootstrap): an endpoint on the "12"
# base migrated to the "13" base by mirage-migrate. Checked: the preflight inhibitor
# (DSA key) refuses without --force; the dry run lists per path the component, action
# and why, and per package what happens, and changes nothing; kill -9 while linking
# /old-root and during the apply's commit, then reruns finish the migration; after it:
# the new release's files, the user area byte-identical, identity, fstab and the carried
# settings kept, the DSA key gone and reported, the user's package reported, the old
# system under /old-root/<id> (hard links), a carried sudoers.d file visudo (a real
# one, from sudo's package) rejects renamed PATH.mirage-local and reported, an enablement of a unit 13 dropped not
# carried and reported (one of a unit 13 has kept), the user's package reported as not
# reinstalled (no apt-get in the tree) with the reason, fewer bytes on the wire than the new big
# file, the device given the new base, app layers reported for recapture, an event per
# step. Rollback (killed while staging, in its commit and by a real kill -9, rerun): the old system area back, a file the user made
# after the migration kept, /old-root/<id> gone; a second rollback refused. Two
# endpoints by --collection, --keep-old-root bounds, the retention removing an expired
# /old-root. The removal of an /old-root killed in its middle (the retention's) and after
# its report (the rollback's, the retention's): a rerun finishes it, and one event gives
# the size measured before it began. A device offline for its whole retention rolled back
# from its /old-root. A symlinked post-migration hook not run.
source "$(dirname "$0")/lib.sh"
need python3
T=$TEST_TMP
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d = d[int(k)] if k.isdigit() else d[k]
print(d if not isinstance(d,(dict,list)) else json.dumps(d))' "$1"; }

# A real visudo (sudo's package from the host's apt, cached beside the debootstrap
# roots) with the libraries it needs, in ROOT: the migration checks the carried
# sudoers.d files with it in a chroot (root only). False when it cannot be had.
add_visudo() {
  local r=$1 cache=${MIRAGE_TEST_CACHE:-/var/cache/mirage-tests} x=$TEST_TMP/.sudo lib
  [ "$(id -u)" = 0 ] && [ -z "${MIRAGE_TEST_NO_VISUDO:-}" ] || return 1
  if [ ! -d "$x" ]; then
    if ! ls "$cache"/sudo_*.deb >/dev/null 2>&1; then
      mkdir -p "$cache" && (cd "$cache" && apt-get download sudo) >/dev/null 2>&1 || return 1
    fi
    dpkg-deb -x "$(ls "$cache"/sudo_*.deb | head -1)" "$x" || return 1
  fi
  mkdir -p "$r/usr/sbin" "$r/usr/libexec/sudo"
  cp "$x/usr/sbin/visudo" "$r/usr/sbin/" && cp -a "$x"/usr/libexec/sudo/libsudo_util.so* "$r/usr/libexec/sudo/"
  for lib in $(LD_LIBRARY_PATH=$x/usr/libexec/sudo ldd "$x/usr/sbin/visudo" | grep -o '/[^ ]*' | grep -v "^$x"); do
    mkdir -p "$r$(dirname "$lib")" && cp -L "$lib" "$r$lib" || return 1
  done
}

mkroot() {  # ROOT VERSION: a tiny Debian-like system of release VERSION
  local r=$1 v=$2
  mkdir -p "$r"/{etc/ssh,etc/sudoers.d,etc/cron.d,etc/systemd/system/multi-user.target.wants,usr/bin,usr/share/doc/base}
  mkdir -p "$r"/{var/lib/dpkg,home,root,srv,tmp,var/log,var/cache/apt,usr/lib/systemd/system}
  ln -s usr/lib "$r/lib"
  printf '[Service]\nExecStart=/usr/bin/ls\n' >"$r/usr/lib/systemd/system/kept.service"
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\ndaemon:x:1:\nsudo:x:27:\n' >"$r/etc/group"
  printf 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n' >"$r/etc/shadow"; chmod 640 "$r/etc/shadow"
  printf 'Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: %s\n\n' "$v" >"$r/var/lib/dpkg/status"
  printf 'Package: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.%s\n\n' "$v" >>"$r/var/lib/dpkg/status"
  echo "$v" >"$r/etc/debian_version"
  printf 'PRETTY_NAME="Debian %s"\n' "$v" >"$r/etc/os-release"
  printf '#!/bin/sh\necho ls %s\n' "$v" >"$r/usr/bin/ls"; chmod 755 "$r/usr/bin/ls"
  printf 'sshd config %s\n' "$v" >"$r/etc/ssh/sshd_config"
  printf 'site tuning %s\n' "$v" >"$r/etc/site.conf"
  printf 'sudoers readme %s\n' "$v" >"$r/etc/sudoers.d/README"
  printf 'ref-host\n' >"$r/etc/hostname"
  if [ "${visudo:-}" = yes ]; then add_visudo "$r" || fail "visudo could be had once, not twice"; fi
}
visudo=no
if add_visudo "$TEST_TMP/.probe"; then visudo=yes; else echo "no visudo to be had: its check's warning tested" >&2; fi

old=$T/old; mkroot "$old" 12.8
head -c 600000 /dev/urandom >"$old/usr/bin/big"; chmod 755 "$old/usr/bin/big"
printf 'only in 12\n' >"$old/usr/share/doc/base/old-only.txt"
printf '[Service]\nExecStart=/usr/bin/big\n' >"$old/usr/lib/systemd/system/gone.service"  # 13 dropped it
mirage-capture base --root "$old" --name deb12 --output json >/dev/null
new=$T/new; mkroot "$new" 13.1
cp -a "$old/usr/bin/big" "$new/usr/bin/big"
printf 'patch13' | dd of="$new/usr/bin/big" bs=1 seek=300000 conv=notrunc status=none
printf 'only in 13\n' >"$new/usr/share/doc/base/new-only.txt"
printf '_newsvc:x:990:990::/nonexistent:/usr/sbin/nologin\n' >>"$new/etc/passwd"
printf '_newsvc:x:990:\n' >>"$new/etc/group"
printf '_newsvc:!:20000::::::\n' >>"$new/etc/shadow"
mirage-capture base --root "$new" --name deb13 --output json >/dev/null
# An app layer captured on the old base: reported for recapture, not carried.
after=$T/after; cp -a "$old" "$after"
printf '#!/bin/sh\necho app\n' >"$after/usr/bin/app"; chmod 755 "$after/usr/bin/app"
mirage-capture app --before-root "$old" --after-root "$after" --name tool --on-base deb12@1 --output json >/dev/null

# The endpoint: the old base given, then a user, her files, an admin, settings, identity.
ep=$T/ep; cp -a "$old" "$ep"
printf 'ep-host\n' >"$ep/etc/hostname"
printf 'ffffffffffffffffffffffffffffffff\n' >"$ep/etc/machine-id"
printf 'UUID=1234 / ext4 defaults 0 1\n' >"$ep/etc/fstab"
printf 'alice:x:1000:1000::/home/alice:/bin/sh\nadmin:x:1001:1001::/home/admin:/bin/sh\n' >>"$ep/etc/passwd"
printf 'alice:x:1000:\nadmin:x:1001:\n' >>"$ep/etc/group"
sed -i 's/^sudo:x:27:$/sudo:x:27:admin/' "$ep/etc/group"
printf 'alice:!:19000:0:99999:7:::\nadmin:!:19000:0:99999:7:::\n' >>"$ep/etc/shadow"
mkdir -p "$ep/home/alice/docs"; head -c 100000 /dev/urandom >"$ep/home/alice/docs/thesis.pdf"
printf 'notes\n' >"$ep/home/alice/notes.txt"
if [ "$(id -u)" = 0 ]; then chown -R 1000:1000 "$ep/home/alice"; fi
printf 'ed25519 key\n' >"$ep/etc/ssh/ssh_host_ed25519_key"
printf 'dsa key\n' >"$ep/etc/ssh/ssh_host_dsa_key"; printf 'dsa pub\n' >"$ep/etc/ssh/ssh_host_dsa_key.pub"
mkdir -p "$ep/etc/NetworkManager/system-connections" "$ep/etc/cups" "$ep/var/spool/cron/crontabs" "$ep/usr/local/bin"
printf '[connection]\nid=office\n' >"$ep/etc/NetworkManager/system-connections/office.nmconnection"
chmod 600 "$ep/etc/NetworkManager/system-connections/office.nmconnection"
printf '<Printer laser>\n</Printer>\n' >"$ep/etc/cups/printers.conf"
printf '0 * * * * echo hi\n' >"$ep/var/spool/cron/crontabs/alice"
printf '%%sudo ALL=(ALL) ALL\n' >"$ep/etc/sudoers.d/admins"; chmod 440 "$ep/etc/sudoers.d/admins"
printf 'admin ALL=(ALL NOPASSWD /bin/true\n' >"$ep/etc/sudoers.d/broken"; chmod 440 "$ep/etc/sudoers.d/broken"
printf '[Service]\nExecStart=/usr/local/bin/tool\n' >"$ep/etc/systemd/system/local.service"
ln -s /etc/systemd/system/local.service "$ep/etc/systemd/system/multi-user.target.wants/local.service"
ln -s /lib/systemd/system/kept.service "$ep/etc/systemd/system/multi-user.target.wants/kept.service"
ln -s /lib/systemd/system/gone.service "$ep/etc/systemd/system/multi-user.target.wants/gone.service"
printf '#!/bin/sh\necho tool\n' >"$ep/usr/local/bin/tool"; chmod 755 "$ep/usr/local/bin/tool"
printf 'site tuning LOCAL\n' >"$ep/etc/site.conf"
printf 'user program\n' >"$ep/usr/bin/userprog"
printf 'Package: userpkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n' >>"$ep/var/lib/dpkg/status"
printf 'cached\n' >"$ep/var/cache/apt/pkgcache.bin"
# A post-migration hook that is a symlink out of the root: not run (only regular files are).
printf '#!/bin/sh\ntouch "%s"\n' "$T/evil-ran" >"$T/evil-hook"; chmod 755 "$T/evil-hook"
mkdir -p "$ep/etc/mirage/post-migration.d"; ln -s "$T/evil-hook" "$ep/etc/mirage/post-migration.d/50-link"
cp -a "$ep/home/alice" "$T/alice-before"
centralize_accepted "$ep" ep1 >/dev/null
mirage-assign --device ep1 --base deb12@1 --app tool@1 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null
listing "$ep" >"$T/ep-before"

# The preflight finds the DSA key: the migration is refused without --force (exit 5).
expect_exit 5 mirage-migrate check --device ep1 --base deb13 --output json
expect_contains "$OUT" '"ssh.dsa-host-key"'
expect_exit 5 mirage-migrate --device ep1 --base deb13 --output json
expect_contains "$ERR" "inhibitors"
expect_exit 2 mirage-migrate --device ep1 --output json
expect_exit 2 mirage-migrate --device ep1 --base deb13 --keep-old-root 61
expect_exit 3 mirage-migrate --device ep1 --base no-such --force

# The dry run: per path and package, nothing changed, nothing queued.
expect_exit 0 mirage-migrate --device ep1 --base deb13 --force --dry-run --output json
python3 - "$OUT" <<'PY' || fail "dry run: $OUT"
import json, sys
r = json.loads(sys.argv[1])["orders"][0]["plan"]
p = {d["path"]: d for d in r["paths"]}
def is_(path, op, comp, action):
    d = p[path]
    assert (d["op"], d["component"], d["action"]) == (op, comp, action), d
    assert d["why"], d
is_("/etc/debian_version", "replace", "", "not-carried")
is_("/usr/bin/userprog", "remove", "", "not-carried")
is_("/etc/ssh/ssh_host_dsa_key", "remove", "", "not-carried")
is_("/etc/site.conf", "replace", "", "not-carried")
is_("/usr/share/doc/base/old-only.txt", "remove", "", "not-carried")
is_("/usr/share/doc/base/new-only.txt", "create", "", "not-carried")
assert "/etc/hostname" not in p or p["/etc/hostname"]["op"] == "keep", p.get("/etc/hostname")
pk = {x["package"]: x for x in r["packages"]}
assert pk["userpkg"]["change"] == "reinstall", pk
assert pk["coreutils"]["change"] == "upgrade" and pk["coreutils"]["to"] == "9.13.1", pk
assert r["removed_identity"] == ["/etc/ssh/ssh_host_dsa_key.pub", "/etc/ssh/ssh_host_dsa_key"] or \
       sorted(r["removed_identity"]) == ["/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"], r["removed_identity"]
assert r["recapture"] == ["tool@1"], r["recapture"]
gone = "/etc/systemd/system/multi-user.target.wants/gone.service"
assert r["dangling_enablement"] == [gone], r["dangling_enablement"]
assert p[gone]["op"] == "remove" and "dangling enablement" in p[gone]["why"], p[gone]
assert "/etc/systemd/system/multi-user.target.wants/kept.service" not in p or \
       p["/etc/systemd/system/multi-user.target.wants/kept.service"]["op"] == "keep"
assert 0 < r["fetch_bytes"] < 300000, r["fetch_bytes"]
PY
expect_exit 0 mirage-migrate --device ep1 --base deb13 --force --dry-run --output text
expect_contains "$OUT" "not carried (identity): /etc/ssh/ssh_host_dsa_key"
expect_contains "$OUT" "userpkg"
expect_contains "$OUT" "not carried (enables a unit the new system lacks): /etc/systemd/system/multi-user.target.wants/gone.service"
listing "$ep" >"$T/ep-dry"
diff -u "$T/ep-before" "$T/ep-dry" >&2 || fail "the dry run changed the endpoint"

# Queued; the sync is killed while linking /old-root, then in the apply's commit.
expect_exit 0 mirage-migrate --device ep1 --base deb13 --force --keep-old-root 5 --output json
mid=$(json_get orders.0.spec.migration_id <<<"$OUT")
[ -n "$mid" ] || fail "no migration id"
expect_exit 99 env MIRAGE_TEST_CRASH_AT_LINK=5 mirage-centralize --root "$ep" --device-id ep1 --output json
[ -d "$ep/old-root/$mid" ] || fail "the crash left no partial /old-root/$mid"
[ "$(cat "$ep/etc/debian_version")" = 12.8 ] || fail "the system changed before the apply"
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STEP=3 mirage-centralize --root "$ep" --device-id ep1 --output json
expect_exit 0 mirage-centralize --root "$ep" --device-id ep1 --output json
expect_contains "$ERR" "finished"
expect_contains "$ERR" "hooks: /etc/mirage/post-migration.d/50-link is a symbolic link: not run"
R=$OUT

[ ! -e "$T/evil-ran" ] || fail "a symlinked post-migration hook ran"
# The new release, the user's and the machine's own things kept.
[ "$(cat "$ep/etc/debian_version")" = 13.1 ] || fail "debian_version: $(cat "$ep/etc/debian_version")"
cmp "$ep/usr/bin/big" "$new/usr/bin/big" || fail "big is not the new release's"
[ "$("$ep/usr/bin/ls")" = "ls 13.1" ] || fail "ls is not the new release's"
grep -q 'Version: 9.13.1' "$ep/var/lib/dpkg/status" || fail "dpkg status is not the new release's"
[ ! -e "$ep/usr/share/doc/base/old-only.txt" ] && [ -e "$ep/usr/share/doc/base/new-only.txt" ] || fail "docs"
[ "$(cat "$ep/etc/site.conf")" = "site tuning 13.1" ] || fail "an unclaimed /etc file kept its local version"
expect_same_tree "$T/alice-before" "$ep/home/alice"
[ "$(cat "$ep/etc/hostname")" = ep-host ] || fail "hostname"
grep -q ffffffff "$ep/etc/machine-id" || fail "machine-id"
[ "$(cat "$ep/etc/fstab")" = "UUID=1234 / ext4 defaults 0 1" ] || fail "fstab"
[ -e "$ep/etc/ssh/ssh_host_ed25519_key" ] || fail "ed25519 host key lost"
[ ! -e "$ep/etc/ssh/ssh_host_dsa_key" ] && [ ! -e "$ep/etc/ssh/ssh_host_dsa_key.pub" ] || fail "DSA key carried"
grep -q '^alice:x:1000:1000:' "$ep/etc/passwd" && grep -q '^admin:x:1001:' "$ep/etc/passwd" || fail "accounts"
grep -q '^_newsvc:x:990:' "$ep/etc/passwd" || fail "the new release's system account is missing"
grep -q '^sudo:x:27:admin$' "$ep/etc/group" || fail "sudo membership lost"
[ -e "$ep/etc/NetworkManager/system-connections/office.nmconnection" ] || fail "NM connection"
[ -e "$ep/etc/cups/printers.conf" ] && [ -e "$ep/var/spool/cron/crontabs/alice" ] || fail "printers/crontab"
[ -e "$ep/etc/sudoers.d/admins" ] && [ "$(cat "$ep/etc/sudoers.d/README")" = "sudoers readme 13.1" ] || fail "sudoers.d"
if [ $visudo = yes ]; then  # visudo rejects the broken one: renamed, so sudo skips it
  [ ! -e "$ep/etc/sudoers.d/broken" ] && [ -e "$ep/etc/sudoers.d/broken.mirage-local" ] || fail "broken sudoers left active"
else
  [ -e "$ep/etc/sudoers.d/broken" ] || fail "an unchecked sudoers file was moved"
fi
[ -L "$ep/etc/systemd/system/multi-user.target.wants/local.service" ] || fail "unit enablement"
[ -L "$ep/etc/systemd/system/multi-user.target.wants/kept.service" ] || fail "the new release's unit's enablement"
[ ! -L "$ep/etc/systemd/system/multi-user.target.wants/gone.service" ] || fail "a dangling enablement was carried"
[ ! -e "$ep/lib/systemd/system/gone.service" ] || fail "the unit 13 dropped is there"
[ -x "$ep/usr/local/bin/tool" ] || fail "/usr/local"
[ ! -e "$ep/usr/bin/userprog" ] && [ ! -e "$ep/etc/site.conf.mirage-local" ] || fail "not-carried files stayed"
[ -e "$ep/var/cache/apt/pkgcache.bin" ] || fail "the unprotected area was touched"
# The old system under /old-root/<id>: the same inodes (links), user area not there.
o=$ep/old-root/$mid
[ "$(cat "$o/etc/debian_version")" = 12.8 ] || fail "old-root debian_version"
cmp "$o/usr/bin/big" "$old/usr/bin/big" && [ -e "$o/usr/bin/userprog" ] && [ -e "$o/etc/ssh/ssh_host_dsa_key" ] ||
  fail "old-root lacks the old system"
[ "$(cat "$o/etc/site.conf")" = "site tuning LOCAL" ] || fail "old-root lacks the local edit"
[ ! -e "$o/home/alice" ] && [ ! -e "$o/usr/local" ] || fail "old-root holds the user area or /usr/local"
[ "$(stat -c %h "$o/usr/share/doc/base/old-only.txt")" = 1 ] || fail "old-only doc not moved"
python3 - "$R" "$mid" "$visudo" <<'PY' || fail "report: $R"
import json, sys
r = json.loads(sys.argv[1])["order"]
assert r["migration_id"] == sys.argv[2] and r["base"] == "deb13@1", r
assert sorted(r["removed_identity"]) == ["/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"], r
assert r["dangling_enablement"] == ["/etc/systemd/system/multi-user.target.wants/gone.service"], r
assert r["recapture"] == ["tool@1"], r["recapture"]
assert r["hooks"] == [], r["hooks"]  # the symlinked hook is not run
assert r["old_root"]["path"] == "/old-root/" + sys.argv[2] and r["old_root"]["bytes"] > 600000, r["old_root"]
assert r["old_root"]["keep_days"] == 5, r["old_root"]
steps = ["protected", "images", "old_root", "applied", "sudoers", "packages", "hooks"]
if sys.argv[3] == "no":  # no visudo in the new system: checked after apt (which could not run), a warning
    steps = ["protected", "images", "old_root", "applied", "packages", "sudoers", "hooks"]
assert [s["step"] for s in r["steps"]] == steps, r["steps"]
su = r["sudoers"]
if sys.argv[3] == "yes":
    assert su["checked"] == ["/etc/sudoers.d/admins", "/etc/sudoers.d/broken"], su
    [d] = su["disabled"]
    assert d["path"] == "/etc/sudoers.d/broken" and d["renamed_to"] == "/etc/sudoers.d/broken.mirage-local", d
    assert "syntax error" in d["message"] and d["visudo_exit"] != 0, d
    assert not su["after_packages"] and "warning" not in su, su
else:
    assert su["checked"] == [] and su["disabled"] == [] and "no visudo" in su["warning"] and su["after_packages"], su
assert any(p["package"] == "userpkg" and p["change"] == "reinstall" for p in r["packages"]), r["packages"]
# The tree has no apt-get: the user's package is reported by name with the reason.
[u] = r["reinstalled"]
assert u["package"] == "userpkg" and not u["installed"] and u["reason"].startswith("apt-get could not be run"), u
PY
# Bytes on the wire: the shared chunks of big were not sent (order event).
expect_exit 0 mirage events --device ep1 --type migrate
python3 - "$OUT" <<'PY' || fail "events: $OUT"
import json, sys
ev = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
kinds = [e["type"] for e in ev]
for k in ["migrate.protected", "migrate.images", "migrate.old_root", "migrate.applied", "migrate.packages",
          "migrate.sudoers", "migrate.hooks", "migrate.done"]:
    assert k in kinds, (k, kinds)
done = [e for e in ev if e["type"] == "migrate.done"][0]
data = done.get("detail", done)
assert data["recapture"] == ["tool@1"], data
assert 0 < data["bytes_moved"] < 600000, data["bytes_moved"]
assert all("bytes_moved" in e.get("detail", e) for e in ev if e["type"] != "migrate.check"), ev
PY
expect_exit 0 mirage-assign status --device ep1 --output json
expect_contains "$OUT" '"deb13@1"'

# Rollback: the old system area back; a file the user made after the migration stays.
# Killed while staging (the system untouched), in the commit, then by a real kill -9 at
# a random moment of a rerun: the next rerun finishes it.
printf 'written after the migration\n' >"$ep/home/alice/after.txt"
expect_exit 0 mirage-migrate --rollback --device ep1 --output json
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STAGE=1 mirage-centralize --root "$ep" --device-id ep1 --output json
[ "$(cat "$ep/etc/debian_version")" = 13.1 ] || fail "a rollback killed while staging changed the system"
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STEP=2 mirage-centralize --root "$ep" --device-id ep1 --output json
# The revert's commit removes /old-root/<id> too (the snapshot it goes back to has none):
# what it held was measured before the revert began, and is reported once, also when the
# sync is killed after reporting it.
marked=$(python3 - "$MIRAGE_HOME/endpoint/ep1/old-roots.json" "$mid" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))[sys.argv[2]]["measured"]
assert m["bytes"] > 600000 and m["bytes_freed"] > 600000 and m["files"] > 10, m
print(m["bytes"])
PY
) || fail "/old-root/$mid not measured before its rollback"
expect_exit 99 env MIRAGE_TEST_CRASH_OLD_ROOT_REPORTED=1 mirage-centralize --root "$ep" --device-id ep1 --output json
[ "$(cat "$ep/etc/debian_version")" = 12.8 ] && [ ! -e "$ep/old-root/$mid" ] || fail "the rollback was not in place"
kill_after=0.$((RANDOM % 40))
echo "rollback rerun killed (SIGKILL) after ${kill_after}s" >&2
mirage-centralize --root "$ep" --device-id ep1 --output json >/dev/null 2>&1 &
pid=$!
sleep "$kill_after"
kill -9 "$pid" 2>/dev/null || true
wait "$pid" || true
expect_exit 0 mirage-centralize --root "$ep" --device-id ep1 --output json
[ "$(cat "$ep/etc/debian_version")" = 12.8 ] || fail "rollback: debian_version $(cat "$ep/etc/debian_version")"
cmp "$ep/usr/bin/big" "$old/usr/bin/big" && [ -e "$ep/usr/bin/userprog" ] && [ -e "$ep/etc/ssh/ssh_host_dsa_key" ] ||
  fail "rollback: old system area not back"
[ "$(cat "$ep/etc/site.conf")" = "site tuning LOCAL" ] || fail "rollback: local edit not back"
[ -L "$ep/etc/systemd/system/multi-user.target.wants/gone.service" ] || fail "rollback: the old enablement not back"
[ "$(cat "$ep/home/alice/after.txt")" = "written after the migration" ] || fail "rollback lost the user's new file"
[ ! -e "$ep/old-root/$mid" ] || fail "rollback left /old-root/$mid"
# removed_once DEVICE ID REASON BYTES: one migrate.old_root_removed event, with the size
# measured before the removal began.
removed_once() {
  expect_exit 0 mirage events --device "$1" --type migrate.old_root_removed
  python3 - "$OUT" "$2" "$3" "$4" <<'PY' || fail "old_root_removed events of $1: $OUT"
import json, sys
ev = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
[e] = [e for e in ev if e["detail"]["migration_id"] == sys.argv[2]]
d = e["detail"]
assert d["reason"] == sys.argv[3] and d["bytes_freed"] > 600000, d
assert d["bytes"] == int(sys.argv[4]) if sys.argv[4] else d["bytes"] > 600000, d
assert d["bytes_moved"] == 0, d
PY
  python3 -c 'import json,sys; assert sys.argv[2] not in json.load(open(sys.argv[1])), "still in the retention state"' \
    "$MIRAGE_HOME/endpoint/$1/old-roots.json" "$2" || fail "$1: /old-root/$2 not forgotten"
}
removed_once ep1 "$mid" rollback "$marked"
expect_exit 0 mirage-assign status --device ep1 --output json
expect_contains "$OUT" '"deb12@1"'
expect_exit 0 mirage events --device ep1 --type migrate
expect_contains "$OUT" '"type":"migrate.rolled_back"'
expect_exit 5 mirage-migrate --rollback --device ep1
expect_contains "$ERR" "rolled back already"
expect_exit 2 mirage-migrate --rollback --device ep1 --base deb13

# Two endpoints by --collection; the retention removes an expired /old-root.
for n in 2 3; do
  e=$T/ep$n; cp -a "$old" "$e"; printf 'host%s\n' "$n" >"$e/etc/hostname"
  head -c 400000 /dev/urandom >"$e/usr/bin/own-tool"  # only this system has it: under /old-root after
  cp "$e/usr/bin/own-tool" "$T/own-tool-$n"
  centralize_accepted "$e" ep$n >/dev/null
done
mirage collection create lab --device ep2 --device ep3 >/dev/null
expect_exit 0 mirage-migrate --collection lab --base deb13 --keep-old-root 2 --output json
[ "$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["orders"]))' <<<"$OUT")" = 2 ] || fail "collection: $OUT"
for n in 2 3; do
  mirage-centralize --root "$T/ep$n" --device-id ep$n --output json >/dev/null
  [ "$(cat "$T/ep$n/etc/debian_version")" = 13.1 ] || fail "ep$n not migrated"
  [ "$(cat "$T/ep$n/etc/hostname")" = host$n ] || fail "ep$n hostname"
done
state=$MIRAGE_HOME/endpoint/ep2/old-roots.json
[ -f "$state" ] || fail "no retention record"
python3 - "$state" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for v in d.values():
    assert v["keep_days"] == 2, v
    v["created_at"] -= 3 * 86400 * 10**9
json.dump(d, open(sys.argv[1], "w"))
PY
ls "$T/ep2/old-root" | grep -q . || fail "ep2 has no /old-root"
mid2=$(ls "$T/ep2/old-root")
# Killed in the middle of the removal, then after reporting it: the rerun finishes it and
# the server has one event with the size measured before the removal began.
n_before=$(find "$T/ep2/old-root/$mid2" | wc -l)
expect_exit 99 env MIRAGE_TEST_CRASH_AT_REMOVE=5 mirage-centralize --root "$T/ep2" --device-id ep2 --output json
[ "$(find "$T/ep2/old-root/$mid2" | wc -l)" -lt "$n_before" ] || fail "the crash left no half-removed /old-root"
marked=$(python3 -c 'import json,sys; m = json.load(open(sys.argv[1]))[sys.argv[2]]["removing"]
assert m["reason"] == "retention", m; print(m["bytes"])' "$state" "$mid2") || fail "not marked: $(cat "$state")"
expect_exit 99 env MIRAGE_TEST_CRASH_OLD_ROOT_REPORTED=1 mirage-centralize --root "$T/ep2" --device-id ep2 --output json
[ ! -e "$T/ep2/old-root/$mid2" ] || fail "the rerun did not finish the removal"
expect_exit 0 mirage-centralize --root "$T/ep2" --device-id ep2 --output json
[ -z "$(ls "$T/ep2/old-root")" ] || fail "the expired /old-root was not removed"
removed_once ep2 "$mid2" retention "$marked"
# A device offline for its whole retention, then given a rollback: it rolls back from its
# /old-root (kept for the queued rollback: next to nothing fetched), then removes it.
[ -n "$(ls "$T/ep3/old-root")" ] || fail "ep3's /old-root went too"
mid3=$(ls "$T/ep3/old-root")
python3 - "$MIRAGE_HOME/endpoint/ep3/old-roots.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for v in d.values():
    v["created_at"] -= 30 * 86400 * 10**9
json.dump(d, open(sys.argv[1], "w"))
PY
expect_exit 0 mirage-migrate --rollback --device ep3 --output json
expect_exit 0 mirage-centralize --root "$T/ep3" --device-id ep3 --output json
[ "$(cat "$T/ep3/etc/debian_version")" = 12.8 ] && cmp -s "$T/ep3/usr/bin/own-tool" "$T/own-tool-3" ||
  fail "ep3 not rolled back"
python3 -c 'import json,sys; w = json.loads(sys.argv[1])["order"]["wire_bytes"]; assert w < 300000, w' "$OUT" ||
  fail "ep3's rollback fetched the old system (its /old-root went first): $OUT"
[ ! -e "$T/ep3/old-root/$mid3" ] || fail "ep3's rollback left /old-root/$mid3"
removed_once ep3 "$mid3" rollback ""
echo ok

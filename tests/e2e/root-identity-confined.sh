#!/usr/bin/env bash
# --root DIR never reads or writes outside DIR through the endpoint's identity files
# (etc/hostname, etc/machine-id, etc/os-release): a symlink to a file outside is
# resolved inside DIR (so the outside file is not read), a machine-id holding "../.."
# is refused before it names the state directory, and a link to /dev/zero or a FIFO is
# skipped without reading it or hanging. A link that stays inside DIR still works.
source "$(dirname "$0")/lib.sh"
need python3 mkfifo timeout
outside=$TEST_TMP/outside
mkdir -p "$outside"
echo "root:SECRET-SHADOW-LINE:19000:0:99999:7:::" >"$outside/shadow"
hostname_of() {  # hostname_of DEVICE: what the server stored
  mirage-centralize devices --output json |
    python3 -c 'import json,sys; print(next(d["hostname"] for d in json.load(sys.stdin)["devices"] if d["device_id"] == sys.argv[1]))' "$1"
}

# 1. etc/hostname -> a file outside the root (absolute, and relative with ../..).
for kind in abs rel; do
  r=$TEST_TMP/root-$kind; mkdir -p "$r/etc"
  if [ $kind = abs ]; then ln -s "$outside/shadow" "$r/etc/hostname"
  else ln -s "../../../../../../../../..$outside/shadow" "$r/etc/hostname"; fi
  ln -s "$outside/shadow" "$r/etc/os-release"
  expect_exit 5 timeout 60 mirage-centralize --root "$r" --device-id "link-$kind" --output json
  h=$(hostname_of "link-$kind")
  case "$h" in *SECRET*) fail "the outside file was sent as the hostname ($kind link): $h" ;; esac
  case "$(mirage-centralize devices --output json)" in *SECRET*) fail "the outside file reached the server ($kind link)" ;; esac
done
# A link that stays inside the root is followed as the booted system would.
r=$TEST_TMP/root-inside; mkdir -p "$r/etc" "$r/usr/lib" "$r$outside"
echo "inner-host" >"$r$outside/shadow"
ln -s "$outside/shadow" "$r/etc/hostname"   # absolute: resolved inside the root
printf 'ID=testos\nVERSION_ID=7\n' >"$r/usr/lib/os-release"; ln -s ../usr/lib/os-release "$r/etc/os-release"
expect_exit 5 timeout 60 mirage-centralize --root "$r" --device-id link-inside --output json
[ "$(hostname_of link-inside)" = inner-host ] || fail "a link inside the root was not followed: $(hostname_of link-inside)"
mirage-centralize devices --output json | python3 -c '
import json, sys
d = next(d for d in json.load(sys.stdin)["devices"] if d["device_id"] == "link-inside")
assert d["inventory"].get("os_id") == "testos", d' || fail "etc/os-release -> ../usr/lib/os-release was not read"

# 2. etc/machine-id holding a path: refused (usage), nothing made outside.
r=$TEST_TMP/root-dotdot; mkdir -p "$r/etc"
echo "../../escaped" >"$r/etc/machine-id"
expect_exit 2 timeout 60 mirage-centralize --root "$r" --output json
expect_contains "$ERR" "machine id"
[ ! -e "$TEST_TMP/escaped" ] && [ ! -e "$MIRAGE_HOME/escaped" ] || fail "the machine-id named a directory outside"
find "$TEST_TMP" -name escaped | grep -q . && fail "a directory named by the machine-id was made: $(find "$TEST_TMP" -name escaped)"
expect_exit 2 mirage-centralize --root "$r" --device-id .. --output json
[ ! -e "$MIRAGE_HOME/credential" ] || fail "--device-id .. wrote into the data directory"

# 3. etc/machine-id and etc/hostname -> /dev/zero: not read (no endless read).
r=$TEST_TMP/root-zero; mkdir -p "$r/etc" "$r/dev"
ln -s /dev/zero "$r/etc/machine-id"; ln -s /dev/zero "$r/etc/hostname"
expect_exit 2 timeout 60 mirage-centralize --root "$r" --output json
expect_contains "$ERR" "device"
if [ "$(id -u)" = 0 ]; then mknod "$r/dev/zero" c 1 5; fi   # a real device inside the root too
expect_exit 2 timeout 60 mirage-centralize --root "$r" --output json
expect_exit 5 timeout 60 mirage-centralize --root "$r" --device-id zero --output json
[ -z "$(hostname_of zero | tr -d '\0')" ] || fail "hostname read from /dev/zero"

# 4. FIFOs: skipped, no hang.
r=$TEST_TMP/root-fifo; mkdir -p "$r/etc"
mkfifo "$r/etc/machine-id" "$r/etc/hostname" "$r/etc/os-release"
expect_exit 2 timeout 60 mirage-centralize --root "$r" --output json
expect_exit 5 timeout 60 mirage-centralize --root "$r" --device-id fifo --output json
expect_contains "$ERR" "not a regular file"
# A huge regular file is not taken either.
r=$TEST_TMP/root-big; mkdir -p "$r/etc"
head -c 100000 /dev/zero | tr '\0' a >"$r/etc/hostname"
expect_exit 5 timeout 60 mirage-centralize --root "$r" --device-id big --output json
[ -z "$(hostname_of big)" ] || fail "a 100 kB hostname file was taken"
echo ok

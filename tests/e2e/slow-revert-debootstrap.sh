#!/usr/bin/env bash
# Revert on the device, on a real Debian tree (the bookworm minbase root of the other
# debootstrap tests) with a user and her files, run as deployed: an HTTPS server, the
# endpoint on its own device credential, the order picked up by its --watch. After a
# snapshot S: /usr/bin/ls deleted, /etc/bash.bashrc edited, the user's files changed and
# added. --mode system: the machine area equals S's by the independent listing, dpkg
# --audit is clean and ls runs in a chroot, the user's changes are still there.
# --mode user-data: only the user area is S's. --mode full: the whole tree is S's. Then
# kill -9 at chosen points of each mode's revert (staging, commit) and at a random time,
# each followed by a sync: the device is as the mode says S's, and dpkg is consistent.
# Last, a streamed full revert killed before its fill: usable (a shell, dpkg -s), then the
# next sync completes it.
source "$(dirname "$0")/lib.sh"
need_root
need debootstrap openssl python3 chroot timeout
T=$TEST_TMP
pki=$T/pki
make_pki "$pki"
start_http_server "$T/server" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
export MIRAGE_SERVER="$SERVER_URL"
admin() { MIRAGE_TOKEN=$ADMIN_TOKEN "$@" --ca-file "$pki/ca.pem"; }
sync_ep() { mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-deb --output json "$@"; }
# The unprotected directories' contents are not in a snapshot, and a revert leaves them.
unprotected=(proc sys dev run tmp var/tmp var/cache)

ep=$T/ep
make_bookworm "$ep"
chroot "$ep" useradd -m -u 1000 -s /bin/bash alice
mkdir -p "$ep/home/alice/docs"
head -c 1000000 /dev/urandom >"$ep/home/alice/docs/thesis.pdf"
printf 'notes at S\n' >"$ep/home/alice/notes.txt"
chroot "$ep" chown -R alice:alice /home/alice

expect_exit 5 sync_ep
admin mirage-centralize accept ep-deb >/dev/null
sync_ep >"$T/s.json"
S=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["snapshot_id"])' <"$T/s.json")
cp -a "$ep" "$T/at-s"

change_machine() {
  rm -f "$ep/usr/bin/ls"
  echo "# edited after the snapshot" >>"$ep/etc/bash.bashrc"
}
change_user() {
  printf 'notes changed\n' >"$ep/home/alice/notes.txt"
  head -c 50000 /dev/urandom >"$ep/home/alice/docs/new.bin"
}
change_machine; change_user
chroot "$ep" ls / >/dev/null 2>&1 && fail "setup: ls still runs"
cp -a "$ep/home" "$T/home-now"
sync_ep >/dev/null

mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-deb --watch --interval 60m --poll 0.2s \
  --output json >"$T/watch.log" 2>"$T/watch.err" &
watcher=$!
trap 'kill $watcher 2>/dev/null || true; stop_server; wait $watcher 2>/dev/null || true; cleanup' EXIT
revert() {  # revert MODE: queued by the help desk, carried out by the watcher
  expect_exit 0 admin timeout 300 mirage-restore --device ep-deb --snapshot "$S" --on-device --mode "$1" --wait \
    --timeout 240 --output json
  expect_contains "$OUT" '"state":"done"'
}
dpkg_ok() {
  local audit
  audit=$(chroot "$ep" dpkg --audit) || fail "dpkg --audit failed"
  [ -z "$audit" ] || { echo "$audit" >&2; fail "dpkg --audit is not clean ($1)"; }
  chroot "$ep" ls / >/dev/null || fail "ls does not run in the chroot ($1)"
}

revert system
# Only what changed moves: ls (about 150 KB) and the bashrc; the trees are in the
# endpoint's cache, every other byte is on the device.
wire=$(python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["wire_bytes"], r["apply"]["bytes_fetched"], r["apply"]["bytes_local"])' <<<"$OUT")
echo "system revert: wire bytes, bytes fetched, bytes found on the device: $wire" >&2
[ "${wire%% *}" -lt 1000000 ] || fail "the system revert moved ${wire%% *} bytes for a change of about 150 KB"
expect_same_tree "$T/at-s" "$ep" home root srv "${unprotected[@]}"
dpkg_ok system
expect_same_tree "$T/home-now" "$ep/home"
[ "$(cat "$ep/home/alice/notes.txt")" = "notes changed" ] || fail "system reverted the user's notes"

change_machine
revert user-data
expect_same_tree "$T/at-s/home" "$ep/home"
[ ! -e "$ep/usr/bin/ls" ] || fail "user-data touched the machine area"

change_user
revert full
expect_same_tree "$T/at-s" "$ep" "${unprotected[@]}"
dpkg_ok full

kill -TERM $watcher
for _ in $(seq 1 100); do kill -0 $watcher 2>/dev/null || break; sleep 0.1; done
wait $watcher || fail "the watcher exited $? on SIGTERM"

# kill -9 at random points of each mode's revert, each followed by a sync.
crash_and_rerun() {  # MODE and VAR=VALUE for the crash point, or "random"
  local mode=$1 point=$2
  change_machine; change_user
  rm -rf "$T/home-now"; cp -a "$ep/home" "$T/home-now"
  admin mirage-restore --device ep-deb --snapshot "$S" --on-device --mode "$mode" --output json >/dev/null
  if [ "$point" = random ]; then
    # The binary itself in the background (a function would put a subshell between).
    mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-deb --output json >/dev/null 2>&1 &
    local pid=$!
    sleep "$((RANDOM % 3)).$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  else
    expect_exit 99 env "$point" mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-deb --output json
  fi
  expect_exit 0 sync_ep
  [ -z "$(find "$ep" -name '.mirage-new-*' | head -1)" ] || fail "staged files left behind ($mode, $point)"
  case $mode in
    system) expect_same_tree "$T/at-s" "$ep" home root srv "${unprotected[@]}"
            expect_same_tree "$T/home-now" "$ep/home" ;;
    user-data) expect_same_tree "$T/at-s/home" "$ep/home"
               [ ! -e "$ep/usr/bin/ls" ] || fail "user-data touched the machine area ($point)"
               return ;;
    full) expect_same_tree "$T/at-s" "$ep" "${unprotected[@]}" ;;
  esac
  dpkg_ok "$mode after a crash at $point"
}
crash_and_rerun system MIRAGE_TEST_CRASH_AT_STAGE=1
crash_and_rerun user-data MIRAGE_TEST_CRASH_AT_STEP=$((RANDOM % 3))
crash_and_rerun full MIRAGE_TEST_CRASH_AT_STEP=$((RANDOM % 4))
crash_and_rerun full random

# A streamed full revert (--stream): the sync dies once the minimal set is written and
# the rest are placeholders; the chroot then runs a shell and dpkg -s works, the user's
# lost files are marked placeholders of their size; the next sync fills them first and
# the whole tree is S's.
change_machine; change_user
rm -rf "$ep/home/alice/docs"
admin mirage-restore --device ep-deb --snapshot "$S" --on-device --mode full --stream --output json >/dev/null
expect_exit 99 env MIRAGE_TEST_CRASH_AT_FILL=1 mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-deb \
  --output json
chroot "$ep" /bin/sh -c 'dpkg -s coreutils >/dev/null && ls / >/dev/null' || fail "the minimal set does not run a shell, ls and dpkg -s"
python3 -c 'import os,sys; os.getxattr(sys.argv[1], "user.mirage.placeholder", follow_symlinks=False)' \
  "$ep/home/alice/docs/thesis.pdf" || fail "thesis.pdf is not a placeholder after the streamed revert's apply"
[ "$(stat -c %s "$ep/home/alice/docs/thesis.pdf")" = 1000000 ] || fail "thesis.pdf's placeholder is not of its size"
expect_exit 0 sync_ep
expect_same_tree "$T/at-s" "$ep" "${unprotected[@]}"
dpkg_ok "full --stream"
echo ok

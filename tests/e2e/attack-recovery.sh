#!/usr/bin/env bash
# Attacks on disaster recovery's streaming restore, over HTTPS with the device on its
# own credential:
# 1. While placeholders are being filled, whoever may write a directory of the target
#    swaps a placeholder for a file of their own (marked, same size, with a second link
#    kept elsewhere) and another for a FIFO: the fill writes only the inodes the restore
#    made (the swapped file gets none of the snapshot's bytes, the FIFO does not hold
#    the fill), warns, and ends.
# 2. A streaming restore killed with -9, then the half-restored tree centralized (the
#    restored machine's own sync after a reboot): the placeholders are left out of the
#    snapshot as unreadable (the snapshot is incomplete: exit 1), never stored as files of zeros carrying the mark; a rerun
#    of the restore then finishes the tree. The server heard the bytes left at "usable".
# 3. A damaged or hostile status file: `status` says so (exit 0, the server's view
#    still shown), never a JSON library's message, and a bogus pid is not "running".
# 4. --stream with --on-device but not --mode full, --bwlimit without --stream, --stream
#    with --from-device: refused, no order queued.
# 5. device.replace, device.reenroll and order.revert on a device's credential or none:
#    refused; malformed and guessed fingerprints; a replaced device's sync and takeovers
#    by or of a replaced device refused.
source "$(dirname "$0")/lib.sh"
need_root
need openssl python3 setfattr timeout
start_https_fleet "$TEST_TMP/server"
is_placeholder() { python3 -c 'import os,sys; os.getxattr(sys.argv[1], "user.mirage.placeholder", follow_symlinks=False)' "$1" 2>/dev/null; }

src=$TEST_TMP/src
mkdir -p "$src/etc" "$src/home/u/docs" "$src/opt"
echo host >"$src/etc/hostname"
head -c 8M /dev/urandom >"$src/home/u/docs/big.bin"          # filled first (newest), slowly
head -c 300K /dev/urandom >"$src/home/u/docs/secret.bin"
chmod 600 "$src/home/u/docs/secret.bin"                        # root's, in a directory u may write
head -c 200K /dev/urandom >"$src/home/u/docs/fifo-target.bin"
head -c 1M /dev/urandom >"$src/opt/c.bin"
chown 4321:4321 "$src/home/u/docs"
touch -d '2020-01-01' "$src/home/u/docs/secret.bin" "$src/home/u/docs/fifo-target.bin" "$src/opt/c.bin"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-a --state "$TEST_TMP/state-a" --output json
admin mirage-centralize accept dev-a >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev-a --state "$TEST_TMP/state-a" --output json

status_file=$MIRAGE_HOME/restore/dev-a.json
stage() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("stage",""))' "$status_file" 2>/dev/null || true; }
wait_stage() {  # wait_stage STAGE PID: at most 60 s
  for _ in $(seq 1 600); do
    [ "$(stage)" = "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || fail "the restore ended before stage $1: $(cat "$TEST_TMP/r.err")"
    sleep 0.1
  done
  fail "no stage $1 within 60 s: $(cat "$TEST_TMP/r.err")"
}
wait_exit() {  # wait_exit PID: at most 60 s, then its exit code in $RC
  for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && { kill -9 "$1"; fail "the restore still ran after 60 s: $(tail -5 "$TEST_TMP/r.err")"; }
  RC=0; wait "$1" || RC=$?
}

# 1. Swaps during the fill. 8 MB at 2 MB/s: the fill of big.bin holds ~4 s, and the
# older files wait behind it.
back=$TEST_TMP/back
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore --device dev-a --path / --to "$back" --stream --bwlimit 2M --output json \
  >"$TEST_TMP/r.out" 2>"$TEST_TMP/r.err" &
pid=$!
wait_stage filling $pid
docs=$back/home/u/docs
is_placeholder "$docs/secret.bin" || fail "secret.bin was filled before the attack could start (the fill was too fast)"
mine=$docs/.mine
head -c 300K /dev/zero >"$mine"
setfattr -n user.mirage.placeholder -v 1 "$mine"
chown 65534:65534 "$mine"; chmod 666 "$mine"
ln "$mine" "$TEST_TMP/stolen"
mv "$mine" "$docs/secret.bin"
rm "$docs/fifo-target.bin"; mkfifo "$docs/fifo-target.bin"
wait_exit $pid
[ "$RC" = 0 ] || fail "the restore failed after the swaps (exit $RC): $(tail -5 "$TEST_TMP/r.err")"
cmp -s "$TEST_TMP/stolen" "$src/home/u/docs/secret.bin" && fail "the fill wrote secret.bin's bytes into a file put in its place"
cmp -s "$TEST_TMP/stolen" <(head -c 300K /dev/zero) || fail "the swapped-in file was written to"
[ "$(stat -c %u "$TEST_TMP/stolen")" = 65534 ] || fail "the swapped-in file was given the snapshot's owner"
[ -p "$docs/fifo-target.bin" ] || fail "the FIFO was replaced"
expect_contains "$(cat "$TEST_TMP/r.out" "$TEST_TMP/r.err")" "secret.bin: changed at the target"
cmp "$src/home/u/docs/big.bin" "$docs/big.bin" || fail "big.bin was not restored"
cmp "$src/opt/c.bin" "$back/opt/c.bin" || fail "c.bin was not restored"

# 2. Killed mid-fill, then the half-restored tree centralized as a device of its own.
back2=$TEST_TMP/back2
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore --device dev-a --path / --to "$back2" --stream --bwlimit 1M --output json \
  >"$TEST_TMP/r.out" 2>"$TEST_TMP/r.err" &
pid=$!
wait_stage filling $pid
kill -9 $pid; wait $pid 2>/dev/null || true
is_placeholder "$back2/opt/c.bin" || fail "c.bin was filled before the kill (the fill was too fast)"
expect_exit 5 mirage-centralize --root "$back2" --device-id dev-b --state "$TEST_TMP/state-b" --output json
admin mirage-centralize accept dev-b >/dev/null
expect_exit 1 mirage-centralize --root "$back2" --device-id dev-b --state "$TEST_TMP/state-b" --output json
python3 - "$OUT" <<'PY' || fail "the snapshot of a half-restored tree: $OUT"
import json, sys
st = json.loads(sys.argv[1])["snapshot"]["stats"]
names = [u["path"] for u in st["unreadable_entries"]]
assert "/opt/c.bin" in names and "/home/u/docs/secret.bin" in names, names
assert all("placeholder" in u["reason"] for u in st["unreadable_entries"]), st["unreadable_entries"]
PY
admin mirage-restore --device dev-b --path / --to "$TEST_TMP/b-back" --output json >/dev/null
[ -e "$TEST_TMP/b-back/opt/c.bin" ] && fail "a placeholder's zeros were backed up as /opt/c.bin"
python3 - "$TEST_TMP/b-back" <<'PY' || fail "a restored file carries the placeholder mark"
import os, sys
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        assert "user.mirage.placeholder" not in os.listxattr(os.path.join(d, f), follow_symlinks=False), f
PY
expect_exit 0 admin mirage-restore status --device dev-a --output json
expect_contains "$OUT" '"stage":"interrupted"'
# The server heard at "usable" what was left: the 4 placeholders' bytes (it said 0).
python3 -c 'import json,sys; d=json.loads(sys.argv[1])["server"]["detail"]; assert (d["files_left"], d["bytes_left"]) == (4, 9949184), d' \
  "$OUT" || fail "the usable event's files and bytes left: $OUT"
admin mirage-restore --device dev-a --path / --to "$back2" --stream --output json >/dev/null 2>"$TEST_TMP/r.err" \
  || fail "the rerun failed: $(cat "$TEST_TMP/r.err")"
expect_same_tree "$src" "$back2"

# 3. Damaged and hostile status files.
for doc in '{"pid":"x","stage":"filling"}' '[1,2]' '"text"' 'garbage{' '{"progress":{"files_done":"lots"},"stage":"filling"}' \
  '{"pid":-1,"stage":"filling"}' '{"pid":0,"stage":"filling"}' '{"pid":99999999999,"stage":"filling"}'; do
  printf '%s' "$doc" >"$status_file"
  expect_exit 0 admin mirage-restore status --device dev-a --output json
  python3 - "$OUT" "$doc" <<'PY' || fail "status with the status file $doc: $OUT $ERR"
import json, sys
s = json.loads(sys.argv[1])
assert s["server"]["type"] in ("restore.usable", "restore.done"), s
local = s["local"]
assert local.get("stage") in ("damaged", "interrupted"), local
PY
  expect_exit 0 admin mirage-restore status --device dev-a
  case "$OUT" in *json.exception*|*type_error*) fail "status shows a JSON library's message: $OUT" ;; esac
done

# 4. --stream where nothing streams: refused, not ignored (a revert order queued).
expect_exit 2 admin mirage-restore --device dev-a --on-device --stream  # --mode system: not a whole device
expect_exit 2 admin mirage-restore --device dev-a --on-device --mode full --bwlimit 1M
expect_exit 2 admin mirage-restore --device dev-b --from-device dev-a --stream
expect_exit 0 admin mirage-assign status --device dev-a --output json
python3 -c 'import json,sys; assert json.loads(sys.argv[1])["pending"] == [], sys.argv[1]' "$OUT" || fail "an order was queued: $OUT"

# 5. Re-enrolment and replacement are an admin's: refused to a device's own credential
# and to no token at all; a fingerprint of the wrong form or a guessed one is refused;
# a replaced device neither syncs nor takes a CVD back (A -> C, then C -> A).
cred_a="mdc_dev-a.$(cat "$TEST_TMP/state-a/credential")"
for token in "$cred_a" ""; do
  expect_exit 4 env MIRAGE_TOKEN="$token" mirage-restore --device dev-b --from-device dev-a --no-revert
  expect_exit 4 env MIRAGE_TOKEN="$token" mirage-restore --device dev-a --on-device --mode full
  expect_exit 4 env MIRAGE_TOKEN="$token" mirage-centralize accept dev-a --reenroll
done
expect_exit 2 admin mirage-centralize accept dev-a --reenroll --fingerprint abc
expect_exit 2 admin mirage-centralize accept dev-a --reenroll --fingerprint "$(printf 'z%.0s' $(seq 16))"
expect_exit 5 admin mirage-centralize accept dev-a --reenroll --fingerprint 0123456789abcdef
mkdir -p "$TEST_TMP/c/etc"
expect_exit 5 mirage-centralize --root "$TEST_TMP/c" --device-id dev-c --state "$TEST_TMP/state-c" --output json
expect_exit 0 admin mirage-restore --device dev-c --from-device dev-b --no-revert --output json
expect_exit 4 mirage-centralize --root "$back2" --device-id dev-b --state "$TEST_TMP/state-b" --output json
expect_exit 5 admin mirage-restore --device dev-b --from-device dev-c --no-revert
expect_exit 5 admin mirage-restore --device dev-a --from-device dev-b --no-revert
expect_exit 2 admin mirage-restore --device dev-c --from-device dev-c --no-revert

# 6. The mount: modes as stored hold for other local users (--allow-other with
# default_permissions), and SIGTERM while a read waits on a server that does not answer
# (stopped) unmounts within seconds, not after the HTTP idle timeout (300 s).
if [ -e /dev/fuse ] && command -v setpriv >/dev/null && command -v mountpoint >/dev/null; then
  mp=$TEST_TMP/mnt
  mkdir -p "$mp"; chmod 755 "$TEST_TMP"
  MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore mount --device dev-a --allow-other "$mp" >"$TEST_TMP/m.out" 2>"$TEST_TMP/m.err" &
  mpid=$!
  unmount_left() { mountpoint -q "$mp" && { umount -l "$mp" 2>/dev/null || true; }; kill -CONT "$SERVER_PID" 2>/dev/null || true; }
  for _ in $(seq 1 300); do mountpoint -q "$mp" && break; kill -0 $mpid 2>/dev/null || break; sleep 0.1; done
  mountpoint -q "$mp" || fail "the mount did not come up: $(cat "$TEST_TMP/m.err")"
  as() { local id=$1; shift; setpriv --reuid "$id" --regid "$id" --clear-groups "$@"; }
  as 65534 cat "$mp/latest/home/u/docs/secret.bin" >/dev/null 2>&1 && { unmount_left; fail "nobody read root's 0600 file through the mount"; }
  as 65534 ls "$mp/latest/home/u/docs" >/dev/null || { unmount_left; fail "nobody cannot list a 0755 directory"; }
  kill -STOP "$SERVER_PID"
  (timeout 60 cat "$mp/latest/opt/c.bin" >/dev/null 2>&1 || true) &
  sleep 1
  kill -TERM $mpid
  for _ in $(seq 1 150); do kill -0 $mpid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $mpid 2>/dev/null; then unmount_left; kill -9 $mpid; fail "the mount still ran 15 s after SIGTERM with a read in flight"; fi
  kill -CONT "$SERVER_PID"
  wait $mpid || fail "the mount exited $? after SIGTERM: $(cat "$TEST_TMP/m.err")"
  mountpoint -q "$mp" && { unmount_left; fail "still mounted after SIGTERM"; }
  expect_contains "$(cat "$TEST_TMP/m.err")" "abandoned"
fi

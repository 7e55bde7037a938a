#!/usr/bin/env bash
# Revert on the device, deployed as in production: an HTTPS server, the endpoint syncing
# with --watch on its own device credential, the help desk queueing the revert with
# mirage-restore --on-device --wait. A small tree with a machine area and a user's files:
# --mode system puts the machine area back as the snapshot had it (by the independent
# listing) and keeps the user's changes; --mode user-data puts the user area back and
# keeps a machine-area change; --mode full makes the whole tree the snapshot's. The layer
# state follows (the device's layers are those it had at the snapshot). --dry-run lists
# what would change and changes nothing. kill -9 while staging, then a sync: rolled back
# to exactly the state before; kill -9 in the middle of the commit, then a sync: the
# snapshot's tree. The next enforce works from the snapshot's layers.
source "$(dirname "$0")/lib.sh"
need openssl python3 timeout
T=$TEST_TMP
pki=$T/pki
make_pki "$pki"
start_http_server "$T/server" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
export MIRAGE_SERVER="$SERVER_URL"
admin() { MIRAGE_TOKEN=$ADMIN_TOKEN "$@" --ca-file "$pki/ca.pem"; }
sync_ep() { mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-r --output json "$@"; }
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[int(k)] if k.isdigit() else d[k]
print(d if not isinstance(d,(list,dict)) else json.dumps(d))' "$1"; }
# same_except_user A B: the listings agree outside the user area's contents.
same_machine() { expect_same_tree "$1" "$2" home root srv; }

ep=$T/ep
mkdir -p "$ep"/{etc/ssh,usr/bin,usr/lib/tool,home/alice/docs,root,tmp,var/lib/dpkg}
printf '# system bashrc\n' >"$ep/etc/bash.bashrc"
echo host-at-s >"$ep/etc/hostname"
echo 11111111111111111111111111111111 >"$ep/etc/machine-id"
echo key-at-s >"$ep/etc/ssh/ssh_host_ed25519_key"; chmod 600 "$ep/etc/ssh/ssh_host_ed25519_key"
head -c 150000 /dev/urandom >"$ep/usr/bin/ls"; chmod 755 "$ep/usr/bin/ls"
head -c 90000 /dev/urandom >"$ep/usr/lib/tool/lib.so"
ln "$ep/usr/lib/tool/lib.so" "$ep/usr/lib/tool/lib.so.1"
printf 'Package: coreutils\nStatus: install ok installed\n\n' >"$ep/var/lib/dpkg/status"
printf 'notes at s\n' >"$ep/home/alice/notes.txt"
head -c 300000 /dev/urandom >"$ep/home/alice/docs/thesis.pdf"
chown -R 1000:1000 "$ep/home/alice"

expect_exit 5 sync_ep
admin mirage-centralize accept ep-r >/dev/null
# A base layer given before the snapshot: the snapshot records it.
mkdir -p "$T/base1/etc" "$T/base2/etc"
echo layer-v1 >"$T/base1/etc/layer.conf"; echo layer-v2 >"$T/base2/etc/layer.conf"
admin mirage-capture base --root "$T/base1" --name ubase --output json >/dev/null
admin mirage-assign --device ep-r --base ubase@1 --output json >/dev/null
sync_ep >"$T/sync1.json"
[ "$(cat "$ep/etc/layer.conf")" = layer-v1 ] || fail "setup: the layer was not applied"
S=$(json_field snapshot.snapshot_id <"$T/sync1.json")
find "$ep" -type d -exec touch -h -d '2020-01-02 03:04:05.123456789' {} +  # old directory times: a change shows
sync_ep >"$T/sync2.json"
S=$(json_field snapshot.snapshot_id <"$T/sync2.json")
cp -a "$ep" "$T/at-s"

# Life goes on: base v2 given, ls deleted, bashrc edited, identity changed, the user's
# notes changed and a file added, a program installed by hand, a link broken.
admin mirage-capture base --root "$T/base2" --name ubase --output json >/dev/null
admin mirage-assign --device ep-r --base ubase@2 --output json >/dev/null
sync_ep >/dev/null
[ "$(cat "$ep/etc/layer.conf")" = layer-v2 ] || fail "setup: layer v2 was not applied"
change_machine() {
  rm -f "$ep/usr/bin/ls"
  printf '# edited\n' >>"$ep/etc/bash.bashrc"
  echo host-now >"$ep/etc/hostname"
  echo key-now >"$ep/etc/ssh/ssh_host_ed25519_key"
  printf '#!/bin/sh\n' >"$ep/usr/bin/mine"; chmod 755 "$ep/usr/bin/mine"
  rm -f "$ep/usr/lib/tool/lib.so.1"; cp "$ep/usr/lib/tool/lib.so" "$ep/usr/lib/tool/lib.so.1"
}
change_user() {
  printf 'notes now\n' >"$ep/home/alice/notes.txt"
  printf 'new\n' >"$ep/home/alice/new.txt"
}
change_machine; change_user
cp -a "$ep/home" "$T/home-now"
sync_ep >/dev/null  # the dry run plans against the latest snapshot

mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-r --watch --interval 60m --poll 0.2s \
  --output json >"$T/watch.log" 2>"$T/watch.err" &
watcher=$!
trap 'kill $watcher 2>/dev/null || true; stop_server; wait $watcher 2>/dev/null || true; cleanup' EXIT

# --dry-run: what would change, nothing queued.
expect_exit 0 admin timeout 60 mirage-restore --device ep-r --snapshot "$S" --on-device --dry-run --output json
ops=$(python3 -c 'import json,sys; print("\n".join(o["action"] + " " + o["path"] for o in json.load(sys.stdin)["ops"]))' <<<"$OUT")
grep -qx "create /usr/bin/ls" <<<"$ops" || fail "the dry run does not create /usr/bin/ls: $ops"
grep -qx "remove /usr/bin/mine" <<<"$ops" || fail "the dry run does not remove /usr/bin/mine: $ops"
grep -qx "replace /etc/hostname" <<<"$ops" || fail "the dry run does not bring the hostname back: $ops"
if grep -q " /home" <<<"$ops"; then fail "a system dry run names the user area: $ops"; fi
expect_exit 0 admin mirage-restore --device ep-r --snapshot "$S" --on-device --dry-run --output text
expect_contains "$OUT" "would revert ep-r to snapshot $S (system)"
[ ! -e "$ep/usr/bin/ls" ] || fail "a dry run changed the device"
[ "$(admin mirage-assign status --device ep-r --output json | json_field pending)" = "[]" ] || fail "a dry run queued an order"

# --mode system (the default).
expect_exit 0 admin timeout 90 mirage-restore --device ep-r --snapshot "$S" --on-device --wait --timeout 60 --output json
expect_contains "$OUT" '"state":"done"'
expect_contains "$OUT" '"mode":"system"'
protected=$(json_field result.protected_by <<<"$OUT")
same_machine "$T/at-s" "$ep"
expect_same_tree "$T/home-now" "$ep/home"
[ "$(cat "$ep/etc/hostname")" = host-at-s ] || fail "the hostname did not come from the snapshot"
[ "$(stat -c %i "$ep/usr/lib/tool/lib.so")" = "$(stat -c %i "$ep/usr/lib/tool/lib.so.1")" ] || fail "the hardlink is not back"
expect_exit 0 admin mirage-assign status --device ep-r --output json
[ "$(json_field given.layers <<<"$OUT")" = '["ubase@1"]' ] || fail "the layers are not those of the snapshot: $OUT"
# The next enforce works from them: layer v1's file, not v2's.
echo drifted >"$ep/etc/layer.conf"
expect_exit 0 admin timeout 90 mirage-assign --device ep-r --enforce --wait --timeout 60 --output json
[ "$(cat "$ep/etc/layer.conf")" = layer-v1 ] || fail "enforce after the revert did not work from the snapshot's layers"
# The state before was protected by a pinned snapshot, which still has the user's changes.
expect_exit 0 admin mirage-restore snapshots --device ep-r --output json
python3 - "$protected" <<PY || fail "the protecting snapshot is not pinned: $OUT"
import json, sys
snaps = {s["snapshot_id"]: s for s in json.loads('''$OUT''')["snapshots"]}
assert snaps[sys.argv[1]]["pinned"], snaps[sys.argv[1]]
PY

# --mode user-data: the user area back, a machine-area change kept.
rm "$ep/usr/bin/ls"
expect_exit 0 admin timeout 90 mirage-restore --device ep-r --snapshot "$S" --on-device --mode user-data --wait --timeout 60 --output json
expect_contains "$OUT" '"state":"done"'
expect_same_tree "$T/at-s/home" "$ep/home"
[ ! -e "$ep/usr/bin/ls" ] || fail "user-data touched the machine area"

# --mode full: everything.
change_user; echo mine >"$ep/root/.profile"
expect_exit 0 admin timeout 90 mirage-restore --device ep-r --snapshot "$S" --on-device --mode full --wait --timeout 60 --output json
expect_contains "$OUT" '"state":"done"'
expect_same_tree "$T/at-s" "$ep" tmp

kill -TERM $watcher
for _ in $(seq 1 50); do kill -0 $watcher 2>/dev/null || break; sleep 0.1; done
wait $watcher || fail "the watcher exited $? on SIGTERM"
grep -q '"order"' "$T/watch.log" || fail "the watcher carried out no order: $(cat "$T/watch.log")"

# kill -9 while staging, then a sync: exactly the state before the revert.
change_machine; change_user
sync_ep >/dev/null  # (the new state is the latest snapshot: the dry run sees it)
listing "$ep" >"$T/before"
admin mirage-restore --device ep-r --snapshot "$S" --on-device --mode full --output json >/dev/null
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STAGE=2 mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-r --output json
[ -n "$(find "$ep" -name '.mirage-new-*' | head -1)" ] || fail "the staging crash left nothing staged (did it stage?)"
expect_exit 99 env MIRAGE_TEST_CRASH_BEFORE_COMMIT=1 mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-r --output json
expect_contains "$ERR" "rolled back"
listing "$ep" >"$T/recovered"
diff -u "$T/before" "$T/recovered" >&2 || fail "the rolled-back device is not what it was before the revert"
# kill -9 in the middle of the commit, then a sync: the snapshot's tree.
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STEP=3 mirage-centralize --ca-file "$pki/ca.pem" --root "$ep" --device-id ep-r --output json
listing "$ep" >"$T/between"
cmp -s "$T/before" "$T/between" && fail "the commit crash changed nothing (did it reach the commit?)"
expect_exit 0 sync_ep
expect_contains "$OUT" '"mode":"full"'
[ -z "$(find "$ep" -name '.mirage-new-*' | head -1)" ] || fail "staged files left behind"
expect_same_tree "$T/at-s" "$ep" tmp

# A device cannot order its own revert; an unknown snapshot is not found.
expect_exit 4 mirage-restore --ca-file "$pki/ca.pem" --device ep-r --snapshot "$S" --on-device \
  --token "mdc_ep-r.$(tr -d "\n" <"$MIRAGE_HOME/endpoint/ep-r/credential")" --output json
expect_exit 3 admin mirage-restore --device ep-r --snapshot ffffffffffffffff --on-device --output json
expect_exit 2 admin mirage-restore --device ep-r --on-device --mode everything
# A streamed revert is a whole device's (revert-stream.sh): with --mode system it is
# refused, not queued as a plain one.
expect_exit 2 admin mirage-restore --device ep-r --snapshot "$S" --on-device --mode system --stream
expect_contains "$ERR" "needs --mode full"
[ "$(admin mirage-assign status --device ep-r --output json | json_field pending)" = "[]" ] || fail "--on-device --stream queued an order"
expect_exit 2 admin mirage-restore --device ep-r --path / --to "$T/x" --wait
echo ok

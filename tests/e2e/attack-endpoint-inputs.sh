#!/usr/bin/env bash
# An outsider's trial of the endpoint's and the help desk's inputs (2026-12-05), over
# HTTPS with the device on its own credential:
# - a mistyped --root is not found (3) before anything is registered or made;
# - --state given as a symbolic link, another user's directory or a directory holding
#   other files (--state /etc by mistake) is refused (2) and left exactly as it was;
# - a file rewritten all the while it is read is read again, then stored as last read
#   and counted unreadable: the sync exits 1 naming it, never 0 with a torn file;
# - --ca-file naming no file is not found (3) naming it, not "server unreachable" (75);
# - an empty --path (an unset "$P") is a usage error (2), not the whole device;
# - a token name that would split a log line is refused (2);
# - a device's pin of its own snapshot, with no order pending, is not taken;
# - on the embedded default, a command that reads (or changes what must exist) finds no
#   store at a mistyped MIRAGE_HOME (3) and makes none; a device id starting with - is refused (2); more
#   than 16 MiB of --input is refused (2) without reading it all.
source "$(dirname "$0")/lib.sh"
need openssl python3
start_https_fleet "$TEST_TMP/server"
src=$TEST_TMP/src
mkdir -p "$src/etc"; echo ep-1 >"$src/etc/hostname"; echo data >"$src/etc/app.conf"

# A mistyped root: not found, and no device registered for it.
expect_exit 3 mirage-centralize --root "$TEST_TMP/no-such-root" --device-id ep-typo --state "$TEST_TMP/st-typo"
expect_contains "$ERR" "no-such-root"
[ ! -e "$TEST_TMP/st-typo" ] || fail "a mistyped root made a state directory"
admin mirage device list --output json >"$TEST_TMP/devices.json"
grep -q ep-typo "$TEST_TMP/devices.json" && fail "a mistyped root registered a device: $(cat "$TEST_TMP/devices.json")"

# State directories that are not the endpoint's to make private.
mkdir -p "$TEST_TMP/etc-like"; echo x >"$TEST_TMP/etc-like/passwd"
chmod 755 "$TEST_TMP/etc-like"; chmod 644 "$TEST_TMP/etc-like/passwd"
expect_exit 2 mirage-centralize --root "$src" --device-id ep-1 --state "$TEST_TMP/etc-like"
expect_contains "$ERR" "holds other files"
mkdir -p "$TEST_TMP/victim"; chmod 755 "$TEST_TMP/victim"; ln -s "$TEST_TMP/victim" "$TEST_TMP/st-link"
expect_exit 2 mirage-centralize --root "$src" --device-id ep-1 --state "$TEST_TMP/st-link"
expect_contains "$ERR" "symbolic link"
[ "$(stat -c %a "$TEST_TMP/etc-like") $(stat -c %a "$TEST_TMP/etc-like/passwd") $(stat -c %a "$TEST_TMP/victim")" = "755 644 755" ] ||
  fail "a refused state directory was changed"
[ -z "$(ls -A "$TEST_TMP/victim")" ] || fail "files written through a state link"
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$TEST_TMP/theirs"; chown nobody "$TEST_TMP/theirs"; chmod 700 "$TEST_TMP/theirs"
  expect_exit 2 mirage-centralize --root "$src" --device-id ep-1 --state "$TEST_TMP/theirs"
  expect_contains "$ERR" "owned by uid"
fi

# Enrolled on its own credential.
st=$TEST_TMP/state
expect_exit 5 mirage-centralize --root "$src" --device-id ep-1 --state "$st"
admin mirage-centralize accept ep-1 >/dev/null
mirage-centralize --root "$src" --device-id ep-1 --state "$st" --output json >/dev/null

# A file rewritten all the while the sync reads it (bounded: the writer stops after 60 s).
head -c 64M /dev/urandom >"$src/busy.bin"
python3 - "$src/busy.bin" "$TEST_TMP/writer.stop" <<'PY' &
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
end = time.time() + 60
with open(path, "r+b") as f:
    i = 0
    while time.time() < end and not os.path.exists(stop):
        f.seek((i * 7919 * 4096) % (60 << 20)); f.write(os.urandom(4096)); f.flush(); os.fsync(f.fileno())
        i += 1
PY
writer=$!
sleep 0.3
expect_exit 1 mirage-centralize --root "$src" --device-id ep-1 --state "$st" --output json
touch "$TEST_TMP/writer.stop"; wait $writer || true
expect_contains "$ERR" "is incomplete"
expect_contains "$OUT" '"unreadable":1'
expect_contains "$OUT" "/busy.bin"
expect_contains "$OUT" "changed while it was read, 3 times"
# Still now, the next sync reads it whole and the snapshot restores it byte for byte.
mirage-centralize --root "$src" --device-id ep-1 --state "$st" --output json >/dev/null
admin mirage-restore --device ep-1 --path /busy.bin --to "$TEST_TMP/back" >/dev/null
cmp "$src/busy.bin" "$TEST_TMP/back/busy.bin" || fail "the file read again differs"

# --ca-file naming no file: not found, named; --watch does not retry it.
expect_exit 3 mirage-centralize --root "$src" --device-id ep-1 --state "$st" --ca-file "$TEST_TMP/no-ca.pem"
expect_contains "$ERR" "no-ca.pem"
expect_exit 3 timeout 20 mirage-centralize --root "$src" --device-id ep-1 --state "$st" --ca-file "$TEST_TMP/no-ca.pem" --watch --interval 1s
admin expect_exit 3 mirage device list --ca-file "$TEST_TMP/no-ca.pem"
# One that holds no certificate: a usage error naming it (2), not "unreachable" either.
echo garbage >"$TEST_TMP/bad-ca.pem"
admin expect_exit 2 mirage device list --ca-file "$TEST_TMP/bad-ca.pem"
expect_contains "$ERR" "bad-ca.pem"
expect_exit 2 timeout 20 mirage-centralize --root "$src" --device-id ep-1 --state "$st" --ca-file "$TEST_TMP/bad-ca.pem" --watch --interval 1s

# An empty path is refused, not the whole snapshot; nothing restored.
admin expect_exit 2 mirage-restore --device ep-1 --path "" --to "$TEST_TMP/empty-path"
expect_contains "$ERR" "empty path"
[ ! -e "$TEST_TMP/empty-path" ] || fail "an empty --path restored something"
admin expect_exit 2 mirage-restore dump --device ep-1 ""

# A token name with a line break in it.
admin expect_exit 2 mirage token create --role helpdesk --name "$(printf 'x\n2026-12-05 POST device.delete caller=admin')"
expect_contains "$ERR" "token name"

# A device's own pin without an order pending: committed unpinned.
cred="mdc_ep-1.$(cat "$st/credential")"
python3 - "$SERVER_URL" "$pki/ca.pem" "$cred" <<'PY' || fail "device pin"
import json, ssl, sys, urllib.request
url, ca, cred = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
def call(method, params):
    body = (json.dumps({"v": 1, "id": 1, "method": method, "params": params}) + "\n").encode()
    req = urllib.request.Request(url + "/v1/rpc", data=body, headers={"Authorization": "Bearer " + cred})
    reply = urllib.request.urlopen(req, context=ctx).read()
    return json.loads(reply.split(b"\n", 1)[0])
last = call("snapshot.list", {"device_id": "ep-1"})["result"]["snapshots"][-1]
got = call("snapshot.commit", {"device_id": "ep-1", "tree": last["tree"], "root": last["root"], "stats": {}, "pinned": True})
assert got["result"]["pinned"] is False, got
PY
# The embedded default: reads make no store; odd ids and huge input are refused.
local_home=$TEST_TMP/typo-home
for cmd in "mirage device list" "mirage-restore snapshots --device ep-1" "mirage check" "mirage events" \
  "mirage gc --dry-run" "mirage-capture list" "mirage-centralize pending" "mirage-assign status --device ep-1" \
  "mirage device rename ep-1 other" "mirage-centralize accept ep-1" "mirage token revoke nobody"; do
  expect_exit 3 env -u MIRAGE_SERVER MIRAGE_HOME="$local_home" $cmd
  expect_contains "$ERR" "no store at"
done
[ ! -e "$local_home" ] || fail "a read made a store at a mistyped MIRAGE_HOME"
expect_exit 2 env -u MIRAGE_SERVER MIRAGE_HOME="$TEST_TMP/home2" mirage-centralize --root "$src" --device-id=-dash --state "$TEST_TMP/st-dash"
expect_contains "$ERR" "not starting with -"
[ ! -e "$TEST_TMP/st-dash" ] || fail "a refused device id made its state directory"
[ ! -e "$TEST_TMP/home2" ] || fail "a refused device id made a store"
head -c 20M /dev/zero | tr '\0' ' ' >"$TEST_TMP/huge.json"
expect_exit 2 env -u MIRAGE_SERVER MIRAGE_HOME="$TEST_TMP/home2" mirage device list --input "$TEST_TMP/huge.json"
expect_contains "$ERR" "larger than"
echo ok

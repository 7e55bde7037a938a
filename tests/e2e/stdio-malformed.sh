#!/usr/bin/env bash
# Malformed input on the stdio transport gets an error reply and a clean exit, never a
# crash; a hand-crafted tree object with ".." in a name is refused at restore.
source "$(dirname "$0")/lib.sh"
need python3 sqlite3
data="$TEST_TMP/data"
check_reply() {  # INPUT EXPECTED-SUBSTRING
  set +e
  printf '%b' "$1" | mirage-serverd --stdio --data "$data" >"$TEST_TMP/reply" 2>"$TEST_TMP/stderr"
  local rc=$?
  set -e
  [ $rc -lt 128 ] || fail "server crashed (exit $rc) on: $1"
  expect_contains "$(head -c 2000 "$TEST_TMP/reply")" "$2"
}
check_reply 'garbage\n' '"code":"usage"'
check_reply '{"v":1,"method":"server.info"}\n{"v":1,' '"result"'
check_reply '{"binary":99999999999999}\n' 'too large'
check_reply '{"v":1,"method":"chunks.get","binary":31}\n0123456789012345678901234567890' 'multiple of 32'
check_reply '{"v":1,"method":"chunks.get","binary":100}\nshort' 'mid-frame'
check_reply '{"v":2,"id":5,"method":"server.info"}\n' 'protocol version'
check_reply '{"v":1,"method":"device.register","params":{"device_id":""}}\n' 'device_id'
check_reply '{"v":1,"method":"policy.set","params":{"name":"p","policy":{"unprotected":"/tmp"}}}\n' 'must be an array'

# A crafted tree whose entry is named ".." is stored (chunks are opaque to the store),
# slipped into the catalog as a snapshot, and must be refused when restoring.
src="$TEST_TMP/src"; mkdir -p "$src"; echo x >"$src/f"
export MIRAGE_HOME="$data"
centralize_accepted "$src" dev-evil >/dev/null
python3 - "$TEST_TMP/crafted" "$TEST_TMP/crafted.id" <<'PY'
import hashlib, json, struct, sys
def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7f | 0x80]); n >>= 7
    return out + bytes([n])
def s(b): return varint(len(b)) + b
entry = s(b"..") + bytes([1]) + varint(0o644) + varint(0) + varint(0) + varint(0) + varint(0) + varint(0) + s(b"") + varint(0) + varint(0) + s(b"") + bytes([0])
tree = b"MTR1" + varint(1) + entry
tid = hashlib.sha256(tree).digest()
rec = tid + bytes([0]) + struct.pack("<II", len(tree), len(tree)) + tree
hdr = json.dumps({"v": 1, "id": 1, "method": "chunks.put", "params": {"device_id": "dev-evil"}, "binary": len(rec)})
open(sys.argv[1], "wb").write(hdr.encode() + b"\n" + rec)
open(sys.argv[2], "w").write(tid.hex())
PY
mirage-serverd --stdio --data "$data" <"$TEST_TMP/crafted" >"$TEST_TMP/reply"
expect_contains "$(cat "$TEST_TMP/reply")" '"new_chunks":1'
tid=$(cat "$TEST_TMP/crafted.id")
root=$(sqlite3 "$data/catalog.db" "SELECT hex(root) FROM snapshots LIMIT 1")
# Point the root entry's subtree (its last 32+2 bytes before the group/flags) at the crafted tree.
newroot=$(python3 -c 'import sys; r=bytes.fromhex(sys.argv[1]); t=bytes.fromhex(sys.argv[2]); print((r[:-34]+t+r[-2:]).hex())' "$root" "$tid")
sqlite3 "$data/catalog.db" "INSERT INTO snapshots(id, device, tree, root, created_at) VALUES ('evil', 'dev-evil', X'$tid', X'$newroot', 9999999999999999999)" 2>/dev/null ||
  sqlite3 "$data/catalog.db" "INSERT INTO snapshots(id, device, tree, root, created_at) VALUES ('evil', 'dev-evil', X'$tid', X'$newroot', 4000000000000000000)"
expect_exit 6 mirage-restore --device dev-evil --snapshot evil --path / --to "$TEST_TMP/out" --output json
expect_contains "$ERR" 'unsafe or invalid entry name'
[ ! -e "$TEST_TMP/f" ] || fail "restore escaped its target"
expect_exit 6 mirage check --output json
expect_contains "$OUT" 'unsafe'
echo ok

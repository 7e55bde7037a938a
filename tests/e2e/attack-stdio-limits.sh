#!/usr/bin/env bash
# A lowered body limit holds over --stdio as over HTTP: with --limit upload-body=64K a
# chunks.put of 200 KiB is refused (usage) and not stored, a small one still
# goes through, and the stream goes on after the refusal. The other lowered limits
# (get-ids, inventory) are enforced by the handlers on both transports.
source "$(dirname "$0")/lib.sh"
need python3
python3 - "$TEST_TMP/data" <<'PY' || fail "stdio limits"
import hashlib, json, struct, subprocess, sys
def rec(data):
    return hashlib.sha256(data).digest() + b"\x00" + struct.pack("<II", len(data), len(data)) + data
def frame(method, params, binary=b"", id_=1):
    h = {"v": 1, "id": id_, "method": method, "params": params}
    if binary:
        h["binary"] = len(binary)
    return json.dumps(h).encode() + b"\n" + binary
big, small = b"y" * (200 * 1024), b"small"
ids = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(5))
stream = (frame("chunks.put", {}, rec(big), 1) + frame("chunks.put", {}, rec(small), 2) +
          frame("chunks.missing", {}, hashlib.sha256(big).digest() + hashlib.sha256(small).digest(), 3) +
          frame("chunks.get", {}, ids, 4) + frame("device.register", {"device_id": "d", "inventory": {"x": "a" * 3000}}, b"", 5))
p = subprocess.run(["mirage-serverd", "--stdio", "--data", sys.argv[1], "--limit", "upload-body=64K",
                    "--limit", "get-ids=2", "--limit", "inventory=1K"], input=stream, capture_output=True, timeout=60)
replies, out = [], p.stdout
while out:  # header line, then its binary part
    line, out = out.split(b"\n", 1)
    replies.append(json.loads(line))
    out = out[replies[-1].get("binary", 0):]
assert p.returncode == 0 and len(replies) == 5, (p.returncode, replies, p.stderr)
def code(r):
    return r.get("error", {}).get("code")
assert code(replies[0]) == "usage" and "over the limit" in replies[0]["error"]["message"], replies[0]
assert "result" in replies[1] and replies[1]["result"]["chunks"] == 1, replies[1]
assert replies[2]["result"]["missing"] == 1, replies[2]  # the big one was not stored
assert code(replies[3]) == "usage" and "get-ids" in replies[3]["error"]["message"], replies[3]
assert code(replies[4]) == "usage" and "inventory" in replies[4]["error"]["message"], replies[4]
print("ok")
PY
echo ok

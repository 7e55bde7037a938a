#!/usr/bin/env python3
"""Hand-made tree objects (MTR1 trees, MTX1 indexes) uploaded by an accepted device and
committed as snapshots; each attack asserts the server's answer (HTTP status and error
code) and that /healthz answers afterwards. Used by tests/e2e/attack-trees.sh; loopback
only, bounded in count and size.

  attack_trees.py URL TOKEN DEVICE ATTACK
"""
import hashlib
import http.client
import json
import struct
import sys
import time
import urllib.parse

URL = urllib.parse.urlparse(sys.argv[1])
HOST, PORT = URL.hostname, URL.port
assert HOST in ("127.0.0.1", "localhost", "::1"), "attacks go to loopback only"
TOKEN, DEVICE = sys.argv[2], sys.argv[3]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return varint(len(b)) + b


def entry(name, kind, subtree=None, chunks=(), mode=0o644):
    """One entry as tree.hpp encodes it (kind 1 file, 2 dir)."""
    size = sum(n for _, n in chunks)
    out = s(name) + bytes([kind]) + varint(mode) + varint(0) + varint(0) + varint(0)
    out += varint(size) + varint(0) + s(b"") + varint(0) + varint(len(chunks))
    for cid, n in chunks:
        out += cid + varint(n)
    if kind == 2:
        out += subtree
    return out + s(b"") + b"\x00"


def tree(entries):  # entries: (name, bytes) already encoded, sorted here
    entries = sorted(entries, key=lambda e: e[0].encode())
    return b"MTR1" + varint(len(entries)) + b"".join(e for _, e in entries)


def index(pieces):  # (id, count, first)
    return b"MTX1" + varint(len(pieces)) + b"".join(i + varint(n) + s(f) for i, n, f in pieces)


def oid(data):
    return hashlib.sha256(data).digest()


def record(data):
    return oid(data) + bytes([0]) + struct.pack("<II", len(data), len(data)) + data


def post(method, params, binary=b"", timeout=120):
    h = {"v": 1, "id": 1, "method": method, "params": params}
    if binary:
        h["binary"] = len(binary)
    body = json.dumps(h).encode() + b"\n" + binary
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    c.request("POST", "/v1/rpc", body=body, headers={"Content-Type": "application/x-mirage-frame",
                                                   "Authorization": "Bearer " + TOKEN, "X-Mirage-Method": method})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data.split(b"\n", 1)[0] or b"{}")


def put(*objects):
    st, reply = post("chunks.put", {"device_id": DEVICE}, b"".join(record(o) for o in objects))
    if st != 200:
        fail(f"chunks.put: HTTP {st}: {json.dumps(reply)[:300]}")


def commit(top):
    root = entry("", 2, subtree=oid(top), mode=0o755)
    return post("snapshot.commit", {"device_id": DEVICE, "tree": oid(top).hex(), "root": root.hex()})


def expect(got, status, code, what):
    st, reply = got
    if st != status or (code and reply.get("error", {}).get("code") != code):
        fail(f"{what}: expected HTTP {status} {code}, got {st}: {json.dumps(reply)[:300]}")
    healthz()
    print(f"{what}: HTTP {st} {code or 'ok'}")


def healthz():
    c = http.client.HTTPConnection(HOST, PORT, timeout=5)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        if r.status != 200 or r.read() != b"ok\n":
            fail("/healthz")
    except OSError as e:
        fail(f"/healthz: {e}")
    finally:
        c.close()


def file_blob(text):
    return text.encode()


def pieces(names, tag=""):
    """Two valid pieces holding `names` split in half, with their index."""
    half = len(names) // 2
    blob = file_blob("x" + tag)
    ps = [tree([(n, entry(n, 1, chunks=[(oid(blob), len(blob))])) for n in part]) for part in (names[:half], names[half:])]
    return blob, ps


def attacks():
    names = ["a", "b", "c", "d"]
    blob, (p1, p2) = pieces(names)
    put(blob, p1, p2)
    good = index([(oid(p1), 2, "a"), (oid(p2), 2, "c")])
    put(good)

    # A piece that is itself an index (nesting).
    inner = index([(oid(p1), 2, "a"), (oid(p2), 2, "c")])
    nested = index([(oid(inner), 2, "a"), (oid(p2), 2, "c")])
    put(nested)
    expect(commit(nested), 422, "integrity", "a piece that is an index")

    # The same piece twice (duplicate ids, duplicate first names).
    dup = index([(oid(p1), 2, "a"), (oid(p1), 2, "a")])
    put(dup)
    expect(commit(dup), 422, "integrity", "the same piece twice")
    # The same piece twice under different first names.
    dup2 = index([(oid(p1), 2, "a"), (oid(p1), 2, "b")])
    put(dup2)
    expect(commit(dup2), 422, "integrity", "the same piece under two first names")

    # Pieces whose names overlap (a..c, then b..d).
    q1 = tree([(n, entry(n, 1, chunks=[(oid(blob), len(blob))])) for n in ("a", "c")])
    q2 = tree([(n, entry(n, 1, chunks=[(oid(blob), len(blob))])) for n in ("b", "d")])
    overlap = index([(oid(q1), 2, "a"), (oid(q2), 2, "b")])
    put(q1, q2, overlap)
    expect(commit(overlap), 422, "integrity", "pieces whose names overlap")

    # Counts that lie: a huge piece count, a huge entry count, a count of zero or one piece.
    huge = b"MTX1" + varint(1 << 60) + oid(p1) + varint(2) + s("a")
    put(huge)
    expect(commit(huge), 422, "integrity", "a piece count of 2^60")
    lying = index([(oid(p1), 1 << 62, "a"), (oid(p2), 2, "c")])
    put(lying)
    expect(commit(lying), 422, "integrity", "an entry count of 2^62")
    one = b"MTX1" + varint(1) + oid(p1) + varint(2) + s("a")
    put(one)
    expect(commit(one), 422, "integrity", "an index of one piece")
    many = index([(oid(p1), 2, "a")] + [(oid(p2), 1, "z%06d" % i) for i in range(50000)])
    put(many)
    expect(commit(many), 422, "integrity", "an index of 50,001 pieces naming one piece again and again")

    # A piece not uploaded (or another device's that does not exist): incomplete.
    ghost = index([(oid(p1), 2, "a"), (oid(b"no such piece"), 2, "c")])
    put(ghost)
    expect(commit(ghost), 409, "precondition", "a piece nobody uploaded")

    # MTR1/MTX1 confusion: a directory whose subtree is a file's bytes; an index as a
    # directory entry's subtree inside a piece is fine (a split subdirectory).
    junk = b"MTX2 not a tree"
    put(junk)
    confused = tree([("d", entry("d", 2, subtree=oid(junk), mode=0o755))])
    put(confused)
    expect(commit(confused), 422, "integrity", "a directory whose subtree is not a tree object")
    # An index whose piece is a file's bytes.
    bad_piece = index([(oid(junk), 2, "a"), (oid(p2), 2, "c")])
    put(bad_piece)
    expect(commit(bad_piece), 422, "integrity", "an index whose piece is not a tree")

    # A piece that holds a directory whose subtree is the index itself cannot exist (the
    # index's id hashes the piece's id); the nearest thing, a piece whose subdirectory is
    # an earlier index, is a valid DAG.
    sub = tree([("s", entry("s", 2, subtree=oid(good), mode=0o755)), ("t", entry("t", 2, subtree=oid(good), mode=0o755))])
    put(sub)
    r1 = tree([(n, entry(n, 2, subtree=oid(good), mode=0o755)) for n in ("a", "b")])
    r2 = tree([(n, entry(n, 2, subtree=oid(sub), mode=0o755)) for n in ("c", "d")])
    dag = index([(oid(r1), 2, "a"), (oid(r2), 2, "c")])
    put(r1, r2, dag)
    expect(commit(dag), 200, None, "a split directory whose subdirectories share an index")

    # An index as a file's chunk: only bytes (restored as the file's content).
    asfile = tree([("f", entry("f", 1, chunks=[(oid(good), len(good))]))])
    put(asfile)
    expect(commit(asfile), 200, None, "an index as a file's chunk")

    # The good split directory last, the snapshot a restore gets.
    expect(commit(good), 200, None, "a valid split directory")


def bomb(depth):
    """Directories `depth` deep, each holding two names for the one below: 2^depth paths."""
    blob = file_blob("leaf")
    put(blob)
    top = tree([("f", entry("f", 1, chunks=[(oid(blob), len(blob))]))])
    objs = [top]
    for _ in range(depth):
        top = tree([(n, entry(n, 2, subtree=oid(top), mode=0o755)) for n in ("a", "b")])
        objs.append(top)
    put(*objs)
    expect(commit(top), 200, None, f"a directory DAG of 2^{depth} paths")


def wide(entries):
    """One MTR1 object of `entries` minimal entries (as small as the format allows)."""
    blob = file_blob("w")
    put(blob)
    es = []
    for i in range(entries):
        n = "%x" % i
        es.append((n, entry(n, 6, mode=0)))  # fifos: no chunks, no subtree
    t = tree(es)
    put(t)
    print(f"tree object of {len(t)} bytes, {entries} entries")
    # Over 65,536 entries in one object is refused before it is decoded (the scanner
    # splits such a directory into pieces), so one commit's check holds little.
    if entries > 65536:
        expect(commit(t), 422, "integrity", f"one tree of {entries} entries")
    else:
        expect(commit(t), 200, None, f"one tree of {entries} entries")


if __name__ == "__main__":
    what = sys.argv[4]
    t0 = time.monotonic()
    if what == "attacks":
        attacks()
    elif what == "bomb":
        bomb(int(sys.argv[5]))
    elif what == "wide":
        wide(int(sys.argv[5]))
    else:
        fail("unknown attack " + what)
    print(f"{what}: done in {time.monotonic() - t0:.1f}s")

#!/usr/bin/env python3
"""Hostile requests to a running mirage-serverd over HTTP, one attack per subcommand.

Each attack asserts the server's answer (status and error code), and that /healthz
answers within a second afterwards. Used by tests/e2e/attack-*.sh and by
tests/bench/attack-memory.sh; bounded in count and time, loopback only.

  attack.py URL ATTACK [ARGS...]
"""
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

URL = urllib.parse.urlparse(sys.argv[1])
HOST, PORT = URL.hostname, URL.port
assert HOST in ("127.0.0.1", "localhost", "::1"), "attacks go to loopback only"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def frame(method, params=None, id_=1, binary=b"", extra=None):
    h = {"v": 1, "id": id_, "method": method, "params": params or {}}
    if binary:
        h["binary"] = len(binary)
    if extra:
        h.update(extra)
    return json.dumps(h).encode() + b"\n" + binary


def post(body, token=None, headers=None, timeout=30):
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    hdrs = {"Content-Type": "application/x-mirage-frame"}
    if token is not None:
        hdrs["Authorization"] = token if token.lower().startswith("bearer") else "Bearer " + token
    hdrs.update(headers or {})
    c.request("POST", "/v1/rpc", body=body, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    c.close()
    header = data.split(b"\n", 1)[0]
    try:
        reply = json.loads(header) if header else {}
    except ValueError:
        reply = {"raw": header[:200].decode(errors="replace")}
    return r.status, reply


def reply_head(s, timeout):
    # What the server answered on socket s, up to the end of its header (or until it
    # closed or went quiet); closes s.
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    return data


def expect(status_reply, status, code=None, what=""):
    got, reply = status_reply
    if got != status:
        fail(f"{what}: expected HTTP {status}, got {got}: {json.dumps(reply)[:300]}")
    if code is not None and reply.get("error", {}).get("code") != code:
        fail(f"{what}: expected error code {code}, got {json.dumps(reply)[:300]}")
    return reply


def healthz(within=1.0):
    t = time.monotonic()
    c = http.client.HTTPConnection(HOST, PORT, timeout=within + 1)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        ok = r.status == 200 and r.read() == b"ok\n"
    except OSError as e:
        fail(f"/healthz: {e}")
    finally:
        c.close()
    took = time.monotonic() - t
    if not ok or took > within:
        fail(f"/healthz did not answer within {within}s (took {took:.2f}s)")


def nested(depth, size=None):
    # An id nested `depth` levels deep, padded to `size` bytes.
    inner = "[" * depth + "]" * depth
    body = ('{"v":1,"id":' + inner + ',"method":"server.info"}').encode()
    if size and len(body) < size:
        body = body[:-1] + b',"pad":"' + b"x" * (size - len(body) - 9) + b'"}'
    return body + b"\n"


def attack_nesting(token):
    # Within the anonymous limit: refused by depth, before any JSON is copied.
    expect(post(nested(30000)), 400, "usage", "anonymous id nested 30,000 deep")
    healthz()
    # The 120 KB at 60,000 levels: over the anonymous limit; with a token, refused by depth.
    expect(post(nested(60000)), 413, "usage", "anonymous 120 KB nested id")
    expect(post(nested(60000), token), 400, "usage", "120 KB nested id with a token")
    healthz()
    body = ('{"v":1,"id":1,"method":"device.register","params":{"device_id":"deep","inventory":' +
            '{"a":' * 10000 + "1" + "}" * 10000 + "}}").encode() + b"\n"
    expect(post(body), 400, "usage", "inventory nested 10,000 deep")
    body = ('{"v":1,"id":1,"method":"snapshot.commit","params":{"device_id":"x","stats":' +
            "[" * 20000 + "]" * 20000 + "}}").encode() + b"\n"
    expect(post(body, token), 400, "usage", "stats nested 20,000 deep")
    healthz()


def attack_fields(token):
    expect(post(frame("device.register", {"device_id": "big", "hostname": "h" * (10 << 20)})), 413, "usage",
           "anonymous 10 MB hostname")
    expect(post(frame("device.register", {"device_id": "big", "hostname": "h" * (10 << 20)}), token), 400, "usage",
           "admin 10 MB hostname")
    expect(post(frame("device.register", {"device_id": "long", "hostname": "h" * 300})), 400, "usage",
           "300-character hostname")
    expect(post(frame("device.register", {"device_id": "ctl", "hostname": "a\nb"})), 400, "usage",
           "hostname with a newline")
    expect(post(frame("device.register", {"device_id": "inv", "inventory": {"k": "v" * 30000}})), 400, "usage",
           "30 KB inventory")
    expect(post(frame("device.register", {"device_id": "x" * 200})), 400, "usage", "200-character device id")
    expect(post(frame("device.register", {"device_id": "ok-dev", "hostname": "fine"})), 200, None, "a fair register")
    # Nothing of the refused ones was stored, and listing still works.
    reply = expect(post(frame("device.list"), token), 200, None, "device list")
    ids = {d["device_id"] for d in reply["result"]["devices"]}
    if "ok-dev" not in ids or ids & {"big", "long", "ctl", "inv", "x" * 200, "deep", "pad", "m1"}:
        fail(f"refused registrations were stored: {sorted(ids)}")
    healthz()


def attack_bodies(token):
    # A body announced as 1 GiB is refused from its headers, before it is read.
    for who, tok in (("anonymous", None), ("admin", token)):
        s = socket.create_connection((HOST, PORT), timeout=10)
        auth = f"Authorization: Bearer {tok}\r\n" if tok else ""
        s.sendall(f"POST /v1/rpc HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {1 << 30}\r\n\r\n".encode() + b"x" * 65536)
        data = reply_head(s, 10)
        if not data.startswith(b"HTTP/1.1 413"):
            fail(f"{who} 1 GiB body: expected 413 before the body, got {data[:80]!r}")
    # An anonymous request may not exceed 64 KiB, whatever it claims to be.
    expect(post(frame("device.register", {"device_id": "pad", "hostname": "h"}, binary=b"\0" * (100 << 10))), 413,
           "usage", "anonymous 100 KiB body")
    # The method header must match the frame's method.
    expect(post(frame("device.register", {"device_id": "m1"}), None, {"X-Mirage-Method": "server.info"}), 400,
           "usage", "X-Mirage-Method that lies")
    healthz()


def attack_uploads(token, count, mib):
    # Authenticated uploads at once: the body budget holds them back, so the server's
    # memory stays bounded (the zeros are not chunk records: each ends in 422). One that
    # waits too long for its share is told 503 with Retry-After, having done nothing, and
    # is sent again, as the client does; in the end every one is answered 422.
    body = frame("chunks.put", {}, binary=b"\0" * (mib << 20))
    codes, busy = [], []

    def one():
        for _ in range(60):
            c = http.client.HTTPConnection(HOST, PORT, timeout=120)
            c.request("POST", "/v1/rpc", body=body, headers={"Authorization": "Bearer " + token,
                                                            "X-Mirage-Method": "chunks.put"})
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status == 503:
                if r.getheader("Retry-After") != "1" or b"server busy" not in data:
                    codes.append(f"503 without Retry-After: {data[:120]!r}")
                    return
                busy.append(1)
                time.sleep(1)
                continue
            codes.append(r.status)
            return
        codes.append("still busy after 60 tries")

    ts = [threading.Thread(target=one) for _ in range(count)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if codes != [422] * count:
        fail(f"{count} uploads of {mib} MiB: expected 422 each, got {sorted(set(map(str, codes)))}")
    print(f"{count} uploads of {mib} MiB: 422 each, {len(busy)} told to retry later")


def attack_metrics(token):
    evil = 'x"} 1\nmirage_snapshots 999999\n#'
    expect(post(frame(evil), token), 400, "usage", "unknown method")
    c = http.client.HTTPConnection(HOST, PORT, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    if "999999" in text or 'method="x' in text:
        fail("/metrics took a made-up method name as a label")
    if 'method="unknown"' not in text:
        fail("/metrics does not count unknown methods under one label")


def attack_slowloris(count, read_timeout):
    socks = []
    for _ in range(count):
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    # More connections than the server started threads for, none finishing its headers:
    # everyone else is served meanwhile, and each is dropped after the read timeout.
    time.sleep(0.5)
    healthz()
    time.sleep(read_timeout + 1.5)
    for s in socks:
        s.settimeout(1)
        try:
            if s.recv(100):
                pass
        except socket.timeout:
            fail("a connection that never finished its headers was not dropped after the read timeout")
        except OSError:
            pass
    healthz()
    for s in socks:
        s.close()


def attack_headers():
    # Header lines without end: refused (431) once the header passes its limit, and the
    # connection closed; the server's memory does not grow with what was sent.
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\n")
    line = b"X-Pad: " + b"p" * 90 + b"\r\n"
    sent = 0
    try:
        for _ in range(200000):  # 19 MB at most
            s.sendall(line * 100)
            sent += 100
    except OSError:
        pass  # the server closed: what it answered is in the receive buffer
    data = reply_head(s, 5)
    if not data.startswith(b"HTTP/1.1 431"):
        fail(f"{sent} header lines: expected 431, got {data[:80]!r}")
    # A header of 1,000 short lines under the limit is still served.
    c = http.client.HTTPConnection(HOST, PORT, timeout=10)
    c.putrequest("GET", "/healthz")
    for i in range(1000):
        c.putheader(f"X-{i}", "v")
    c.endheaders()
    r = c.getresponse()
    if r.status != 200:
        fail(f"1,000 short header lines: expected 200, got {r.status}")
    c.close()


def attack_idle(count):
    # Keep-alive connections left idle after a request hold no thread: with more of them
    # open than the server has threads, a new client is answered at once.
    conns = []
    for _ in range(count):
        c = http.client.HTTPConnection(HOST, PORT, timeout=10)
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            fail("healthz on a keep-alive connection")
        conns.append(c)
    healthz(within=0.5)
    # Each idle one is still usable (kept alive, not dropped for want of a thread).
    for c in conns[:10]:
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            fail("a kept-alive connection no longer answers")
    for c in conns:
        c.close()


def attack_auth(token):
    reply = expect(post(frame("server.info")), 200, None, "anonymous server.info")
    if "data" in reply["result"]:
        fail("anonymous server.info shows the data directory")
    reply = expect(post(frame("server.info"), "bEaReR " + token), 200, None, "lower-case bearer scheme")
    if reply["result"].get("role") != "admin" or "data" not in reply["result"]:
        fail(f"bearer scheme is case-sensitive: {reply}")
    expect(post(frame("server.info"), "Bearer "), 401, "permission", "empty bearer token")
    expect(post(frame("server.info"), "Basic abc"), 401, "permission", "another scheme")


def attack_parallel(token, device, seconds):
    # One device's slowest legal requests (whole-store reads and check --read-data) run
    # while another caller's server.info must keep answering quickly.
    stop = time.monotonic() + seconds
    slow_done = []

    def slow():
        while time.monotonic() < stop:
            t = time.monotonic()
            st, reply = post(frame("check", {"read_data": True}), token, timeout=120)
            if st != 200:
                fail(f"check during the parallel test: {st} {reply}")
            slow_done.append(time.monotonic() - t)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.2)
    waits = []
    while th.is_alive():
        t = time.monotonic()
        expect(post(frame("server.info")), 200, None, "server.info beside a check")
        waits.append(time.monotonic() - t)
        time.sleep(0.05)
    th.join()
    waits.sort()
    slowest = max(slow_done) if slow_done else 0
    result = {"server_info_calls": len(waits), "server_info_median_seconds": round(waits[len(waits) // 2], 4),
              "server_info_p90_seconds": round(waits[len(waits) * 9 // 10], 4),
              "server_info_worst_seconds": round(waits[-1], 4), "slow_requests": len(slow_done),
              "slow_request_seconds": round(slowest, 3)}
    print(json.dumps(result))
    return result


def attack_limits(token):
    # A server started with lowered limits (tests/e2e/attack-limits.sh) refuses at the
    # new bounds, and takes what is just under them.
    put = {"X-Mirage-Method": "chunks.put"}
    expect(post(frame("chunks.put", {}, binary=b"\0" * (300 << 10)), token, put), 413, "usage", "upload over upload-body=256K")
    expect(post(frame("chunks.put", {}, binary=b"\0" * (200 << 10)), token, put), 422, "integrity",
           "upload under upload-body=256K (zeros are no chunk records)")
    expect(post(frame("device.list", {}, binary=b"\0" * (10 << 10)), token, {"X-Mirage-Method": "device.list"}), 413, "usage",
           "body over request-body=8K")
    # Without X-Mirage-Method the limit is checked once the frame names its method.
    expect(post(frame("device.list", {}, binary=b"\0" * (10 << 10)), token), 400, "usage",
           "body over request-body=8K, no method header")
    expect(post(frame("device.list", {}, binary=b"\0" * (6 << 10)), token), 200, None, "body under request-body=8K")
    expect(post(frame("server.info", {}, binary=b"\0" * (5 << 10))), 413, "usage", "anonymous body over anonymous-body=4K")
    expect(post(frame("server.info", {}, binary=b"\0" * (3 << 10))), 200, None, "anonymous body under anonymous-body=4K")
    expect(post(nested(10), token), 400, "usage", "header nested 10 deep, frame-depth=8")
    expect(post(nested(6), token), 200, None, "header nested 6 deep, frame-depth=8")
    big = frame("chunks.put", {"pad": "x" * (70 << 10)}, binary=b"\0" * 8)
    expect(post(big, token, put), 400, "usage", "70 KiB header, frame-header=64K")
    expect(post(frame("device.register", {"device_id": "inv", "inventory": {"k": "v" * 2000}}), token), 400, "usage",
           "2 KB inventory, inventory=1K")
    ids = bytes(range(1, 33)) + bytes(range(2, 34)) + bytes(range(3, 35))
    expect(post(frame("chunks.get", {}, binary=ids), token, {"X-Mirage-Method": "chunks.get"}), 400, "usage",
           "3 ids, get-ids=2")
    # pending-devices=2: two strangers register, the third is told the server is full
    # (503, and no Retry-After: waiting a second would not help).
    for dev in ("stranger-1", "stranger-2"):
        expect(post(frame("device.register", {"device_id": dev})), 200, None, "anonymous register of " + dev)
    c = http.client.HTTPConnection(HOST, PORT, timeout=10)
    c.request("POST", "/v1/rpc", body=frame("device.register", {"device_id": "stranger-3"}))
    r = c.getresponse()
    reply = json.loads(r.read().split(b"\n", 1)[0])
    c.close()
    if r.status != 503 or reply.get("error", {}).get("code") != "unavailable" or "pending-devices" not in reply["error"]["message"]:
        fail(f"third pending device, pending-devices=2: expected 503 unavailable naming the limit, got {r.status} {reply}")
    if r.getheader("Retry-After"):
        fail("a full pending list answered with Retry-After")
    # An admin's register is not held to it.
    expect(post(frame("device.register", {"device_id": "by-admin"}), token), 200, None, "admin register past pending-devices")
    healthz()


def attack_hold(token, seconds, size):
    # Holds the body budget: an upload whose headers announce `size` bytes, its body sent
    # a byte at a time over `seconds` (never silent as long as --read-timeout), then the
    # rest. Prints "holding" once the body has begun; the reply (the zeros are no frame)
    # must be 400 or 422.
    s = socket.create_connection((HOST, PORT), timeout=seconds + 30)
    s.sendall((f"POST /v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Mirage-Method: chunks.put\r\n"
               f"Content-Length: {size}\r\n\r\n").encode())
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and sent < size - 1:
        s.sendall(b"\0")
        sent += 1
        if sent == 1:
            print("holding", flush=True)
        time.sleep(0.2)
    s.sendall(b"\0" * (size - sent))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if not (data.startswith(b"HTTP/1.1 400") or data.startswith(b"HTTP/1.1 422")):
        fail(f"the budget holder's upload: expected 400 or 422, got {data[:80]!r}")


def main():
    attack = sys.argv[2]
    args = sys.argv[3:]
    if attack == "nesting":
        attack_nesting(args[0])
    elif attack == "fields":
        attack_fields(args[0])
    elif attack == "bodies":
        attack_bodies(args[0])
    elif attack == "uploads":
        attack_uploads(args[0], int(args[1]), int(args[2]))
    elif attack == "metrics":
        attack_metrics(args[0])
    elif attack == "slowloris":
        attack_slowloris(int(args[0]), float(args[1]))
    elif attack == "headers":
        attack_headers()
    elif attack == "idle":
        attack_idle(int(args[0]))
    elif attack == "auth":
        attack_auth(args[0])
    elif attack == "limits":
        attack_limits(args[0])
    elif attack == "hold":
        attack_hold(args[0], float(args[1]), int(args[2]))
    elif attack == "parallel":
        # Behind one lock a server.info waits out part of the check in progress: its
        # median is about half a check. Beside it, a few milliseconds.
        r = attack_parallel(args[0], args[1], float(args[2]))
        slowest = r["slow_request_seconds"]
        if slowest < 0.1:
            fail(f"the slow request took only {slowest:.3f}s: the test proves nothing; make the store larger")
        if r["server_info_median_seconds"] > slowest / 5 or r["server_info_p90_seconds"] > slowest / 3:
            fail(f"server.info waited for another caller's slow request: {json.dumps(r)}")
    else:
        fail("unknown attack " + attack)
    healthz()


if __name__ == "__main__":
    main()

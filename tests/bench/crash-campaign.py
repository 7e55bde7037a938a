#!/usr/bin/env python3
"""Trees and judgements for tests/bench/crash-campaign.sh (independent of mirage's code).

  crash-campaign.py make DIR SEED FILES     a fresh tree of FILES small files and one large
  crash-campaign.py mutate DIR SEED         rewrite a few files, delete one, add one, patch the large one
  crash-campaign.py layer DIR SEED VERSION  the machine area of a synthetic base layer, version 1 or 2
  crash-campaign.py dir-mtimes-only A B      listings A and B differ, and only in directories' mtimes
  crash-campaign.py torn ROOT LIST...       after a kill mid-apply: every file under ROOT holds the
                                            content some listing (tests/e2e/listing.py) gives its
                                            path, or is a staging temporary; prints what is not
"""
import ast
import hashlib
import os
import random
import re
import sys


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def noise(rnd, n):
    return rnd.randbytes(n)


def make(root, seed, files):
    rnd = random.Random(seed)
    for i in range(files):
        write(os.path.join(root, "data", "d%d" % (i % 4), "f%03d" % i), noise(rnd, rnd.randint(200, 40000)))
    write(os.path.join(root, "etc", "shared"), b"".join(b"line %d\n" % i for i in range(20000)))
    write(os.path.join(root, "big.bin"), noise(rnd, 1500000))


def mutate(root, seed):
    rnd = random.Random(seed)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "data")) for f in fs)
    for path in rnd.sample(files, min(5, len(files))):
        write(path, noise(rnd, rnd.randint(200, 40000)))
    victim = rnd.choice(files)
    if os.path.exists(victim):
        os.remove(victim)
    write(os.path.join(root, "data", "d%d" % rnd.randrange(4), "n%d" % seed), noise(rnd, rnd.randint(200, 40000)))
    with open(os.path.join(root, "big.bin"), "r+b") as f:
        f.seek(rnd.randrange(1400000))
        f.write(noise(rnd, 5000))


def layer(root, seed, version):
    """Version 2 rewrites half the libraries, drops two, adds three, changes configs."""
    rnd = random.Random(seed)
    libs = [noise(rnd, rnd.randint(2000, 120000)) for _ in range(24)]
    later = random.Random(seed + 1)
    for i, data in enumerate(libs):
        if version == 2 and i in (3, 7):
            continue
        if version == 2 and i % 2 == 0:
            data = noise(later, len(data) + 100)
        write(os.path.join(root, "usr", "lib", "lib%02d.so" % i), data)
    if version == 2:
        for i in range(3):
            write(os.path.join(root, "usr", "lib", "new%d.so" % i), noise(later, 30000))
    write(os.path.join(root, "usr", "bin", "tool"), b"#!/bin/sh\necho v%d\n" % version)
    os.chmod(os.path.join(root, "usr", "bin", "tool"), 0o755)
    write(os.path.join(root, "etc", "tool.conf"), b"setting = %d\n" % version)
    write(os.path.join(root, "usr", "share", "doc", "README"), b"doc\n" * (100 * version))


LINE = re.compile(rb"^(b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\") (\S+) \S+ \S+ \S+ \S+ \S+ \S+ (?:b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\") (\S+) ")


def contents(listing):
    """path -> set of content hashes ("-" for what is not a regular file)."""
    out = {}
    with open(listing, "rb") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            out[ast.literal_eval(m.group(1).decode("latin-1"))] = m.group(3).decode()
    return out


def torn(root, listings):
    allowed = {}
    for listing in listings:
        for path, h in contents(listing).items():
            allowed.setdefault(path, set()).add(h)
    rootb = os.fsencode(root)
    bad = []
    for d, dirs, files in os.walk(rootb):
        for name in files:
            full = os.path.join(d, name)
            rel = os.path.relpath(full, rootb)
            if b".mirage-new-" in name:
                continue  # staged, not yet in place: recovery removes or renames it
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            want = allowed.get(rel)
            if want is None:
                bad.append("%s: in no image" % rel.decode(errors="replace"))
            elif h.hexdigest() not in want:
                bad.append("%s: content of neither image (torn write?)" % rel.decode(errors="replace"))
    for b in bad[:10]:
        print(b)
    return 1 if bad else 0


def dir_mtimes_only(a, b):
    """True when two listings differ only in the mtime field of directory lines."""
    def fields(listing):
        out = {}
        with open(listing, "rb") as f:
            for line in f:
                m = LINE.match(line)
                if not m:
                    return None
                path, kind = m.group(1), m.group(2)
                rest = line[m.end(2):].split(b" ")
                if kind == b"40000":
                    rest[5] = b"-"  # " mode uid gid size mtime ...": the mtime, after a leading empty field
                out[path] = (kind, b" ".join(rest))
        return out
    fa, fb = fields(a), fields(b)
    return fa is not None and fa == fb


def main(argv):
    cmd = argv[1]
    if cmd == "make":
        make(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "mutate":
        mutate(argv[2], int(argv[3]))
    elif cmd == "layer":
        layer(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "dir-mtimes-only":
        return 0 if dir_mtimes_only(argv[2], argv[3]) and open(argv[2], "rb").read() != open(argv[3], "rb").read() else 1
    elif cmd == "torn":
        return torn(argv[2], argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

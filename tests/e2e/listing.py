#!/usr/bin/env python3
"""Independent listing of a tree for end-to-end comparisons (not mirage code).

One line per entry, sorted by path bytes: path, type, mode, uid, gid, size, mtime ns,
rdev, symlink target, sha256 of content, sparse flag, hardlink group, xattrs.
"""
import hashlib
import os
import stat
import sys


def main(root, skip_contents):
    rootb = os.fsencode(root)
    skip = [os.fsencode(p.strip("/")) + b"/" for p in skip_contents]
    entries = []
    for dirpath, dirnames, filenames in os.walk(rootb, followlinks=False):
        for name in [b""] if dirpath == rootb else []:
            entries.append(dirpath)
        for name in dirnames + filenames:
            entries.append(os.path.join(dirpath, name))
    inode_first = {}
    lines = []
    for full in sorted(entries):
        rel = os.path.relpath(full, rootb) if full != rootb else b"."
        if any(rel.startswith(p) for p in skip):
            continue
        st = os.lstat(full)
        kind = stat.S_IFMT(st.st_mode)
        content = "-"
        sparse = "-"
        if stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            content = h.hexdigest()
            sparse = "sparse" if st.st_size > 0 and st.st_blocks * 512 < st.st_size else "dense"
        target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else b""
        group = "-"
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            group = repr(inode_first.setdefault((st.st_dev, st.st_ino), rel))
        rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
        mtime = st.st_mtime_ns
        size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
        try:
            names = sorted(os.listxattr(full, follow_symlinks=False))
            xattrs = ",".join(
                "%s=%s" % (n, os.getxattr(full, n, follow_symlinks=False).hex()) for n in names)
        except OSError:
            xattrs = "?"
        lines.append("%r %o %o %d %d %d %d %d %r %s %s %s %s" % (
            rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, mtime, rdev, target,
            content, sparse, group, xattrs))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    # listing.py ROOT [DIR...]: the contents of each DIR (root-relative) are left out.
    main(sys.argv[1], sys.argv[2:])

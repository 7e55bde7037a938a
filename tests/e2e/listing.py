#!/usr/bin/env python3
"""Independent listing of a tree for end-to-end comparisons (not mirage code).

One line per entry, sorted by path bytes: path, type, mode, uid, gid, size, mtime ns,
rdev, symlink target, sha256 of content, sparse flag, hardlink group, xattrs.
"""
import hashlib
import os
import stat
import sys


def describe(dirfd, name, rel):
    """Everything but the hardlink group of entry `name` in directory `dirfd`; by fd,
    so trees deeper than PATH_MAX are listed too."""
    st = os.lstat(name, dir_fd=dirfd)
    kind = stat.S_IFMT(st.st_mode)
    content = "-"
    sparse = "-"
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd)
        with os.fdopen(fd, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        content = h.hexdigest()
        sparse = "sparse" if st.st_size > 0 and st.st_blocks * 512 < st.st_size else "dense"
    target = os.readlink(name, dir_fd=dirfd) if stat.S_ISLNK(st.st_mode) else b""
    rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
    size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
    # xattr calls take no dir fd: a short path through /proc reaches the entry at any depth.
    short = b"/proc/self/fd/%d/%s" % (dirfd, name)
    try:
        names = sorted(os.listxattr(short, follow_symlinks=False))
        xattrs = ",".join(
            "%s=%s" % (n, os.getxattr(short, n, follow_symlinks=False).hex()) for n in names)
    except OSError:
        xattrs = "?"
    return st, (rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, st.st_mtime_ns, rdev, target,
                content, sparse), xattrs


def main(root, skip_contents):
    rootb = os.fsencode(root)
    skip = [os.fsencode(p.strip("/")) + b"/" for p in skip_contents]
    found = []
    parent = os.open(os.path.dirname(os.path.abspath(rootb)) or b"/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        found.append(describe(parent, os.path.basename(os.path.abspath(rootb)), b"."))
    finally:
        os.close(parent)
    for dirpath, dirnames, filenames, dirfd in os.fwalk(rootb, follow_symlinks=False):
        reldir = os.path.relpath(dirpath, rootb) if dirpath != rootb else b""
        for name in dirnames + filenames:
            rel = os.path.join(reldir, name) if reldir else name
            if any(rel.startswith(p) for p in skip):
                continue
            found.append(describe(dirfd, name, rel))
    found.sort(key=lambda item: item[1][0] if item[1][0] != b"." else b"")
    inode_first = {}
    lines = []
    for st, fields, xattrs in found:
        group = "-"
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            group = repr(inode_first.setdefault((st.st_dev, st.st_ino), fields[0]))
        lines.append("%r %o %o %d %d %d %d %d %r %s %s %s %s" % (fields + (group, xattrs)))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    # listing.py ROOT [DIR...]: the contents of each DIR (root-relative) are left out.
    main(sys.argv[1], sys.argv[2:])

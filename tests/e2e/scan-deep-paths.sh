#!/usr/bin/env bash
# A tree deeper than PATH_MAX (40 levels of 200-character names, over 8,000 bytes of
# path) is backed up whole and restored byte for byte: the walk, the file reads and the
# restore all go relative to directory fds. Once, the deepest file was left out with
# only a warning and the sync still exited 0.
source "$(dirname "$0")/lib.sh"
need python3 setfattr
src="$TEST_TMP/src"; mkdir -p "$src/top"
echo shallow >"$src/top/shallow.txt"
python3 - "$src/top" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for i in range(40):
    name = ("d%02d" % i) + "x" * 197
    os.mkdir(name, dir_fd=fd)
    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
    if i in (20, 39):  # one file just past PATH_MAX's reach from the root, one at the bottom
        f = os.open("file%02d" % i, os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
        os.write(f, os.urandom(300000) + b"deep %d\n" % i)
        os.close(f)
os.symlink("file39", "link", dir_fd=fd)
os.setxattr("/proc/self/fd/%d/file39" % fd, "user.deep", b"xattr at the bottom")
PY
centralize_accepted "$src" deep >"$TEST_TMP/sync.json"
expect_exit 0 mirage-restore --device deep --path / --to "$TEST_TMP/back" --output json
expect_same_tree "$src" "$TEST_TMP/back"
python3 - "$TEST_TMP/sync.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["stats"]
assert s["unreadable"] == 0, s
assert s["files"] == 3 and s["symlinks"] == 1 and s["dirs"] == 41, s
PY
echo ok

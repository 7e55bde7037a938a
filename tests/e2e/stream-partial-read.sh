#!/usr/bin/env bash
# A streaming restore to a directory (--to DIR --stream), over HTTP:
# 1. A hardlink group with one name in the minimal set (/usr) and one outside (/home):
#    when the tree is usable, the /usr name has its bytes (no placeholder hole behind it)
#    and both names are one inode.
# 2. A read of 4 KiB in the middle of a 32 MB placeholder that the background fill
#    (--bwlimit 256K) has not reached goes on once those bytes are in, while the file is
#    still a placeholder (the read used to wait for the whole file and its fsync).
# 3. kill -9 of the restore right after that read, in the middle of the file's fill: the
#    file stays a placeholder; a rerun makes the tree identical to the source.
source "$(dirname "$0")/lib.sh"
need_root
need python3 timeout cmp
T=$TEST_TMP
start_http_server "$T/server"
export MIRAGE_SERVER="$SERVER_URL"

src=$T/src
mkdir -p "$src/etc" "$src/home/u" "$src/usr/bin"
echo host >"$src/etc/hostname"
head -c 32M /dev/urandom >"$src/home/u/big.bin"
head -c 1M /dev/urandom >"$src/home/u/tool-copy"
ln "$src/home/u/tool-copy" "$src/usr/bin/tool"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-p --state "$T/state" --output json
admin mirage-centralize accept dev-p >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev-p --state "$T/state" --output json

status_file=$MIRAGE_HOME/restore/dev-p.json
back=$T/back
# Not through admin(): a function run in the background is a subshell, and its pid not the restore's.
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore --device dev-p --path / --to "$back" --stream --bwlimit 256K --output json \
  >"$T/r.out" 2>"$T/r.err" &
pid=$!
wait_stream_filling "$status_file" $pid "$T/r.err"

# 1. Usable: the minimal-set name of the group holds its bytes, one inode with the other.
is_placeholder "$back/usr/bin/tool" && fail "/usr/bin/tool (in the minimal set) is a placeholder when the tree is usable"
cmp -s "$src/usr/bin/tool" "$back/usr/bin/tool" || fail "/usr/bin/tool has the wrong bytes when the tree is usable"
[ "$(stat -c %i "$back/usr/bin/tool")" = "$(stat -c %i "$back/home/u/tool-copy")" ] ||
  fail "the two names of one inode were restored as two files"

echo "big.bin before the read: $(stat -c %b "$back/home/u/big.bin") blocks" >&2
# 2. and 3. One process reads 4 KiB at 16 MB, notes whether the file is still a
# placeholder right after, and kills the restore at once (its fill is then part way).
read -r result < <(python3 - "$back/home/u/big.bin" "$src/home/u/big.bin" $pid <<'PY'
import os, signal, sys, time
path, source, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
at = 16 << 20
with open(source, "rb") as f:
    f.seek(at)
    want = f.read(4096)
t0 = time.monotonic()
with open(path, "rb", buffering=0) as f:
    f.seek(at)
    got = f.read(4096)
ms = (time.monotonic() - t0) * 1000
try:
    os.getxattr(path, "user.mirage.placeholder")
    state = "marked"
except OSError:
    state = "filled"
os.kill(pid, signal.SIGKILL)
print("%s %s %d" % ("right" if got == want else "WRONG", state, ms))
PY
)
wait $pid 2>/dev/null || true
echo "read of 4 KiB at 16 MB: $result ms; big.bin after the kill: $(stat -c %b "$back/home/u/big.bin") blocks" >&2
set -- $result
[ "$1" = right ] || fail "the read of a placeholder returned the wrong bytes: $result"
is_placeholder "$back/home/u/big.bin" || fail "big.bin is not a placeholder after a kill -9 during its fill"
cmp -s "$src/home/u/big.bin" "$back/home/u/big.bin" && fail "big.bin was whole when the restore was killed: no partial fill tested"

expect_exit 0 admin mirage-restore --device dev-p --path / --to "$back" --stream --output json
on_demand=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["stream"]["on_demand"])' "$OUT")
if [ "$on_demand" = True ]; then
  # A kernel with pre-content events held the read: it went on before the file was whole.
  [ "$2" = marked ] || fail "the read waited until the whole file was filled: $result"
else
  echo "no fanotify pre-content events here: the read was not held" >&2
fi
expect_same_tree "$src" "$back"
is_placeholder "$back/home/u/big.bin" && fail "big.bin is still a placeholder after the rerun"
echo "stream-partial-read: ok"

#!/usr/bin/env bash
# A streaming restore's --bwlimit and its lock, over HTTPS:
# 1. --bwlimit holds on the wire, not only on average: a 4 MB file filled at 128 KB/s has
#    at most the limit's worth (and a bucket) written at any time into the fill (the
#    limit was taken after each batch: the whole file came at full speed, then the fill
#    waited).
# 2. A second streaming restore of the same device on this machine while the first runs:
#    refused as busy (exit 75), naming the first's pid; the status file is still the
#    first's. After the first is killed with -9 the lock is free: a rerun finishes.
source "$(dirname "$0")/lib.sh"
need_root
need openssl python3 timeout
T=$TEST_TMP
start_https_fleet "$T/server"

src=$T/src
mkdir -p "$src/etc" "$src/home/u"
echo host >"$src/etc/hostname"
head -c 4M /dev/urandom >"$src/home/u/big.bin"
expect_exit 5 mirage-centralize --root "$src" --device-id dev-w --state "$T/state" --output json
admin mirage-centralize accept dev-w >/dev/null
expect_exit 0 mirage-centralize --root "$src" --device-id dev-w --state "$T/state" --output json

status_file=$MIRAGE_HOME/restore/dev-w.json
back=$T/back
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-restore --device dev-w --path / --to "$back" --stream --bwlimit 128K --output json \
  >"$T/r.out" 2>"$T/r.err" &
pid=$!
wait_stream_filling "$status_file" $pid "$T/r.err"
sleep 1
# What the fill wrote against what the limit allows since the tree was usable (the
# status file's second, so one more), plus the bucket and a batch in flight. The old
# limit wrote the whole file at once, which this allows only after 27 s of a loaded machine.
python3 - "$status_file" "$back/home/u/big.bin" <<'PY' || fail "--bwlimit 128K: big.bin was written faster than the limit"
import datetime, json, os, sys, time
usable = datetime.datetime.strptime(json.load(open(sys.argv[1]))["usable"], "%Y-%m-%dT%H:%M:%SZ")
written = os.stat(sys.argv[2]).st_blocks * 512
elapsed = time.time() - usable.replace(tzinfo=datetime.timezone.utc).timestamp() + 1
allowed = 128 * 1024 * elapsed + 512 * 1024
print(f"{written} bytes written {elapsed:.1f} s into the fill, {allowed:.0f} allowed", file=sys.stderr)
sys.exit(0 if written <= allowed else 1)
PY

# 2. A second restorer of the same device: busy.
expect_exit 75 admin mirage-restore --device dev-w --path / --to "$T/back2" --stream
expect_contains "$ERR" "another streaming restore of device dev-w (pid $pid)"
[ -e "$T/back2" ] && fail "the refused restore wrote its target"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["to"] == sys.argv[2], d' "$status_file" "$back" \
  || fail "the status file is no longer the first restore's: $(cat "$status_file")"
kill -9 $pid; wait $pid 2>/dev/null || true
expect_exit 0 admin mirage-restore --device dev-w --path / --to "$back" --stream --output json
expect_same_tree "$src" "$back"
echo "stream-bwlimit-lock: ok"

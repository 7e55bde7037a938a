#!/usr/bin/env bash
# What people read: lists as aligned tables with headers (also through a pipe with
# --output text), an empty list said in words, policy show as text; on a terminal the
# progress line is drawn a few times a second, never past its total, and cleared before
# the summary; --progress json gives JSON lines on stderr; --wait says what it waits for;
# a dry run's text shows every count, path and package of its JSON; mistyped flags and
# commands are named with the nearest; in JSON mode stderr is JSON only.
source "$(dirname "$0")/lib.sh"
need python3
T=$TEST_TMP
check() { python3 "$MIRAGE_SOURCE/tests/e2e/output_check.py" "$@"; }
on_pty() { python3 "$MIRAGE_SOURCE/tests/e2e/pty_run.py" "$@"; }
table_of() { printf '%s\n' "$1" >"$T/table.txt"; check table "$T/table.txt" "${@:2}" >/dev/null || fail "not a table: $1"; }

# Empty lists say so.
mirage-serverd init >/dev/null
expect_exit 0 mirage device list --output text
[ "$OUT" = "no devices" ] || fail "empty device list: $OUT"
expect_exit 0 mirage-capture list --output text
[ "$OUT" = "no layers" ] || fail "empty layer list: $OUT"
expect_exit 0 mirage collection list --output text
[ "$OUT" = "no collections" ] || fail "empty collection list: $OUT"
expect_exit 0 mirage-centralize pending --output text
[ "$OUT" = "no devices waiting to be accepted" ] || fail "empty pending list: $OUT"

# A small distribution: a dpkg status, 300 small files (a render stages each), two
# files with one content (counted once in the bytes to fetch, twice in those written).
ref=$T/ref
mkdir -p "$ref"/{etc,usr/bin,usr/share/many,var/lib/dpkg,home}
printf 'Package: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.1-2\n\nPackage: newpkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.0\n\n' >"$ref/var/lib/dpkg/status"
for i in $(seq 1 300); do printf 'file %s\n' "$i" >"$ref/usr/share/many/f$i"; done
head -c 400000 /dev/urandom >"$ref/usr/bin/tool"
cp "$ref/usr/bin/tool" "$ref/usr/bin/tool-copy"
printf 'base\n' >"$ref/etc/base.conf"
mirage-capture base --root "$ref" --name deb --output json >/dev/null

# Two endpoints; one has an older coreutils, a package of its own and a file of its own.
for host in pc-alice pc-bob; do
  ep=$T/$host; mkdir -p "$ep"/{etc,usr/bin,var/lib/dpkg,home/u}
  printf '%s\n' "$host" >"$ep/etc/hostname"
  printf 'Package: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 9.1-1\n\nPackage: userpkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n' >"$ep/var/lib/dpkg/status"
  printf 'mine\n' >"$ep/usr/bin/mine"
  head -c 2000000 /dev/urandom >"$ep/home/u/data.bin"
  centralize_accepted "$ep" "$host" >/dev/null
done

# Tables: headers, aligned cells, also through a pipe with --output text.
expect_exit 0 mirage device list --output text
table_of "$OUT"
expect_contains "$(head -1 <<<"$OUT")" "DEVICE"
mirage device list --output text | grep -q pc-bob || fail "--output text through a pipe"
[ "$(mirage device list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))')" = 2 ] ||
  fail "JSON is not the default on a pipe"
expect_exit 0 mirage-centralize devices --output text
table_of "$OUT"
expect_exit 0 mirage-restore snapshots --device pc-bob --output text
table_of "$OUT" FILES SIZE CVD
expect_exit 0 mirage-capture list --output text
table_of "$OUT"
expect_exit 0 mirage volume list --output text
table_of "$OUT" VOLUME FREE PACKS "PACK BYTES" DEVICES
expect_exit 0 mirage token list --output text
table_of "$OUT"
expect_exit 0 mirage policy list --output text
table_of "$OUT" DEVICES
expect_exit 0 mirage events --output text --device pc-bob
table_of "$OUT" ID
expect_contains "$OUT" "device.accepted"
expect_exit 0 mirage policy show --output text
expect_contains "$OUT" "user area: /home"
expect_contains "$OUT" "retention:"
case "$OUT" in *'{'*|*'"'*) fail "policy show text is JSON: $OUT" ;; esac

# Progress on a terminal: cleared before the summary (stdout and stderr share the line).
on_pty "$T/restore.pty" 120 mirage-restore --device pc-bob --path / --to "$T/back"
check cleared "$T/restore.pty" 'restoring [0-9]' 'restored [0-9]+ files'
on_pty "$T/sync.pty" 120 mirage-centralize --root "$T/pc-bob" --device-id pc-bob
check cleared "$T/sync.pty" 'scanning' 'snapshot [0-9a-f]+ of device'

# Render: a few redraws (not one per file), never past the total, JSON lines that parse.
on_pty "$T/render.pty" 120 mirage-assign render --base deb --to "$T/render1"
check redraws "$T/render.pty" 40 >/dev/null
if grep -aoE '[0-9.]+ [KMG]?i?B of [0-9.]+ [KMG]?i?B' "$T/render.pty" | python3 -c '
import sys
unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
for line in sys.stdin:
    a, au, _, b, bu = line.split()
    if float(a) * unit[au] > float(b) * unit[bu]: sys.exit(1)'; then :; else fail "render counted past its total"; fi
mirage-assign render --base deb --to "$T/render2" --output json --progress json 2>"$T/render.err" >"$T/render.json"
python3 -m json.tool <"$T/render.json" >/dev/null || fail "render's JSON does not pipe into json.tool"
check jsonlines "$T/render.err" >/dev/null
python3 - "$T/render.err" "$T/render2" <<'PY' || fail "render progress lines"
import json, os, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines and all(l["type"] == "progress" and l["action"] == "render" for l in lines), lines
assert all(l["bytes_done"] <= l["total_bytes"] for l in lines), lines
files = 0
for d, _, names in os.walk(sys.argv[2]):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p): files += os.path.getsize(p)
# Every byte written counts: the two equal files twice, though fetched once.
assert lines[-1]["bytes_done"] == lines[-1]["total_bytes"] == files, (lines[-1], files)
PY
mirage-restore --device pc-bob --path / --to "$T/back2" --output json --progress json 2>"$T/restore.err" |
  python3 -m json.tool >/dev/null || fail "restore's JSON does not pipe into json.tool"
check jsonlines "$T/restore.err" >/dev/null
python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; assert l[-1]["total_bytes"] == l[-1]["bytes_done"] > 0 and l[-1]["files_done"] == 4, l' \
  "$T/restore.err" || fail "restore progress has no totals"

# --wait says what it waits for (nobody syncs: it times out, exit 75).
expect_exit 75 mirage-centralize request --device pc-alice --wait --timeout 2 --output json --progress json
check jsonlines <(printf '%s\n' "$ERR") >/dev/null || fail "stderr is not JSON lines: $ERR"
expect_contains "$ERR" 'for device pc-alice to take snapshot order'
expect_contains "$ERR" '"code":"unavailable"'

# A dry run's text holds what its JSON holds.
mirage-assign --device pc-bob --base deb --dry-run --output json >"$T/plan.json"
python3 -m json.tool <"$T/plan.json" >/dev/null
expect_exit 0 mirage-assign --device pc-bob --base deb --dry-run --output text
printf '%s\n' "$OUT" >"$T/plan.txt"
python3 - "$T/plan.json" "$T/plan.txt" <<'PY' || fail "dry-run text lacks what its JSON has"
import json, sys
plan = json.load(open(sys.argv[1]))["orders"][0]["plan"]
text = open(sys.argv[2]).read()
listed = {}
for op in plan["ops"]:
    listed[op["action"]] = listed.get(op["action"], 0) + 1
    assert op["path"] in text, op
assert listed == plan["counts"], (listed, plan["counts"])
assert listed.get("keep_user"), "the device's own paths are listed"
words = {"keep_user": "keep (the device's own)", "metadata": "metadata only"}
for action, n in plan["counts"].items():
    assert f"{n} {words.get(action, action)}" in text, (action, n)
assert plan["packages"], "a package changes"
for p in plan["packages"]:
    line = [l for l in text.splitlines() if l.split()[:2] == [p["package"], p["change"]]]
    assert line, p
assert "first assignment" in text
PY

# Mistyped flags and commands are named, with the nearest.
expect_exit 2 mirage device list --outptu json --output text
expect_contains "$ERR" "unknown flag --outptu"
expect_contains "$ERR" "did you mean --output?"
expect_exit 2 mirage-restore --devcie pc-bob --output text
expect_contains "$ERR" "did you mean --device?"
expect_exit 2 mirage device lst --output text
expect_contains "$ERR" "unknown command 'lst' for 'mirage device' (did you mean 'list'?)"
expect_exit 2 mirage restor --output text
expect_contains "$ERR" "did you mean 'restore'?"
printf '{"device": "pc-alice"}\n' >"$T/in.json"
expect_exit 2 mirage-restore snapshots --input "$T/in.json" --device pc-bob --output text
expect_contains "$ERR" "--device is given both on the command line and in --input"

# In JSON mode stderr is the JSON error and nothing else.
expect_exit 2 mirage-restore --devcie pc-bob --output json
check jsonlines <(printf '%s\n' "$ERR") >/dev/null || fail "stderr is not JSON: $ERR"
expect_contains "$ERR" '"code":"usage"'
expect_exit 3 mirage-restore snapshots --device nobody --output json
[ "$(wc -l <<<"$ERR")" = 1 ] || fail "more than the error on stderr: $ERR"
check jsonlines <(printf '%s\n' "$ERR") >/dev/null || fail "stderr is not JSON: $ERR"
echo ok

#!/usr/bin/env bash
# A restore the way the help desk types it, on a tree with every kind of entry: the
# device by its hostname (an ambiguous one lists the ids), the snapshot by a time on a
# fake clock; the directories a restore makes on the way get their snapshot metadata
# (checked with the independent lister); --overwrite always, if-changed and never on an
# existing target; a failed restore (an entry where a directory is expected, a missing
# pack) leaves no directory it made; and the event names the paths and the target.
source "$(dirname "$0")/lib.sh"
src="$TEST_TMP/src"
make_every_kind "$src"
mkdir -p "$src/etc" "$src/deep/a/b"
echo pc-bob >"$src/etc/hostname"
echo 'quarterly figures' >"$src/deep/a/b/report.txt"
chmod 0751 "$src/deep"; chmod 0705 "$src/deep/a"; chmod 2770 "$src/deep/a/b"
[ "$(id -u)" = 0 ] && chown 1234:5678 "$src/deep/a/b"
touch -d '2025-03-04 05:06:07.123456789' "$src/deep/a/b"
touch -d '2024-02-03 04:05:06' "$src/deep/a"
touch -d '2023-01-02 03:04:05' "$src/deep"
centralize_accepted "$src" dev-hd >/dev/null
# entry ROOT REL: the independent lister's line for ROOT/REL.
entry() { listing "$1" | awk -v p="b'$2'" '$1 == p'; }

# --device by hostname, in restore and in snapshots.
expect_exit 0 mirage-restore snapshots --device pc-bob --output json
expect_contains "$OUT" '"device_id":"dev-hd"'

# Parents the restore makes get their snapshot's mode, owner and times (they were 0700).
expect_exit 0 mirage-restore --device pc-bob --path /deep/a/b/report.txt --path /dir/sub/hard1 --to "$TEST_TMP/r1" --output json
expect_contains "$OUT" '"device_id":"dev-hd"'
for rel in deep deep/a deep/a/b deep/a/b/report.txt dir dir/sub; do
  want=$(entry "$src" "$rel"); got=$(entry "$TEST_TMP/r1" "$rel")
  [ -n "$want" ] && [ "$want" = "$got" ] || fail "restored parent $rel differs from the snapshot's:
want: $want
got:  $got"
done
# A parent that existed keeps its own metadata.
mkdir -p "$TEST_TMP/r2/deep"; chmod 0700 "$TEST_TMP/r2/deep"; touch -d '2020-01-01' "$TEST_TMP/r2/deep"
expect_exit 0 mirage-restore --device pc-bob --path /deep/a/b/report.txt --to "$TEST_TMP/r2" --output json
[ "$(stat -c %a "$TEST_TMP/r2/deep")" = 700 ] || fail "an existing parent's mode was changed"
[ "$(entry "$src" deep/a)" = "$(entry "$TEST_TMP/r2" deep/a)" ] || fail "a made parent under an existing one lacks its metadata"

# The event names what was restored and where; a whole-device restore names "/"; a long
# list is cut to 64 paths with their count.
expect_exit 0 mirage events --device dev-hd --type restore.done
last=$(tail -1 <<<"$OUT")
expect_contains "$last" '"paths":["/deep/a/b/report.txt"]'
expect_contains "$last" "\"to\":\"$TEST_TMP/r2\""
expect_contains "$last" "\"host\":\"$(hostname)\""
expect_contains "$(sed -n 1p <<<"$OUT")" '"paths":["/deep/a/b/report.txt","/dir/sub/hard1"]'
(cd "$TEST_TMP" && expect_exit 0 mirage-restore --device dev-hd --path / --to whole --output json)
expect_same_tree "$src" "$TEST_TMP/whole"
many=(); for i in $(seq 70); do many+=(--path /deep/a/b/report.txt); done
expect_exit 0 mirage-restore --device dev-hd "${many[@]}" --to "$TEST_TMP/r3" --output json
expect_exit 0 mirage events --device dev-hd --type restore.done
expect_contains "$(tail -2 <<<"$OUT" | head -1)" "\"paths\":[\"/\"],\"paths_total\":1,\"snapshot_id\""
expect_contains "$(tail -2 <<<"$OUT" | head -1)" "\"to\":\"$TEST_TMP/whole\""  # made absolute
last=$(tail -1 <<<"$OUT")
expect_contains "$last" '"paths_total":70'
[ "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["detail"]["paths"]))' "$last")" = 64 ] || fail "paths not cut to 64: $last"

# --overwrite, on a restored /dir changed since: hello.txt replaced by other content,
# text.txt with one byte changed but its size and mtime kept, random.bin deleted,
# sub's mode changed.
o="$TEST_TMP/o"
expect_exit 0 mirage-restore --device dev-hd --path /dir --to "$o" --output json
rm "$o/dir/hello.txt"; echo 'overwritten by the user' >"$o/dir/hello.txt"
printf 'X' | dd of="$o/dir/text.txt" bs=1 seek=100 conv=notrunc status=none
touch -r "$src/dir/text.txt" "$o/dir/text.txt"; chmod 0600 "$o/dir/text.txt"
rm "$o/dir/random.bin"; chmod 0711 "$o/dir/sub"
expect_exit 2 mirage-restore --device dev-hd --path /dir --to "$o" --overwrite sometimes
expect_exit 0 mirage-restore --device dev-hd --path /dir --to "$o" --overwrite never --output json
expect_contains "$OUT" '"overwrite":"never"'
expect_contains "$OUT" '"kept":'
grep -q 'overwritten by the user' "$o/dir/hello.txt" || fail "never replaced an existing file"
cmp -s "$src/dir/text.txt" "$o/dir/text.txt" && fail "never replaced an existing file"
cmp "$src/dir/random.bin" "$o/dir/random.bin"  # a missing one is restored
[ "$(stat -c %a "$o/dir/sub")" = 2711 ] || fail "never changed an existing directory's metadata"  # chmod keeps a dir's setgid
[ "$(stat -c %a "$o/dir/text.txt")" = 600 ] || fail "never changed an existing file's metadata"
expect_exit 0 mirage-restore --device dev-hd --path /dir --to "$o" --overwrite if-changed --output json
cmp "$src/dir/hello.txt" "$o/dir/hello.txt"  # its size differed
cmp -s "$src/dir/text.txt" "$o/dir/text.txt" && fail "if-changed replaced a file of the same size and mtime"
[ "$(entry "$src" dir/text.txt | cut -d' ' -f3-5)" = "$(entry "$o" dir/text.txt | cut -d' ' -f3-5)" ] ||
  fail "if-changed left an unchanged file's mode/owner as they were"
[ "$(entry "$src" dir/sub)" = "$(entry "$o" dir/sub)" ] || fail "if-changed did not set a directory's metadata"
expect_exit 0 mirage-restore --device dev-hd --path /dir --to "$o" --output json  # always, the default
expect_contains "$OUT" '"overwrite":"always"'
expect_contains "$OUT" '"kept":0'
mkdir -p "$TEST_TMP/want"; cp -a "$src/dir" "$TEST_TMP/want/"; touch -r "$o" "$TEST_TMP/want"  # the target is not restored
expect_same_tree "$TEST_TMP/want" "$o"

# --snapshot by time, on a fake clock: snapshots on 20 and 25 November.
mkdir -p "$TEST_TMP/t"; echo v1 >"$TEST_TMP/t/f"
MIRAGE_TEST_NOW=2026-11-20T10:00:00Z centralize_accepted "$TEST_TMP/t" dev-time >/dev/null
echo v2 >"$TEST_TMP/t/f"
MIRAGE_TEST_NOW=2026-11-25T10:00:00Z mirage-centralize --root "$TEST_TMP/t" --device-id dev-time --output json >/dev/null
export MIRAGE_TEST_NOW=2026-11-26T09:00:00Z
for spec_want in yesterday:v2 1d:v1 2d:v1 23h:v2 5d:v1 '2026-11-25 09:59':v1 '2026-11-25 10:00':v2 latest:v2; do
  spec=${spec_want%:*}; want=${spec_want##*:}
  rm -rf "$TEST_TMP/rt"
  expect_exit 0 mirage-restore --device dev-time --snapshot "$spec" --path /f --to "$TEST_TMP/rt" --output json
  [ "$(cat "$TEST_TMP/rt/f")" = "$want" ] || fail "--snapshot $spec restored $(cat "$TEST_TMP/rt/f"), not $want"
done
expect_exit 3 mirage-restore --device dev-time --snapshot 2w --path /f --to "$TEST_TMP/rt2"
expect_contains "$ERR" "no snapshot at or before 2026-11-12T09:00:00Z"
expect_contains "$ERR" "the first is"
[ ! -e "$TEST_TMP/rt2" ] || fail "a refused restore made its target"
unset MIRAGE_TEST_NOW

# A hostname two devices have is refused, naming both.
mkdir -p "$TEST_TMP/twin/etc"; echo pc-bob >"$TEST_TMP/twin/etc/hostname"
expect_exit 5 mirage-centralize --root "$TEST_TMP/twin" --device-id dev-twin --output json
expect_exit 2 mirage-restore --device pc-bob --path /dir --to "$TEST_TMP/amb"
expect_contains "$ERR" "2 devices have this hostname"
expect_contains "$ERR" "dev-hd"
expect_contains "$ERR" "dev-twin"
expect_exit 3 mirage-restore --device pc-nobody --path /dir --to "$TEST_TMP/amb"

# A failed restore leaves no directory it made. An entry where a directory is expected:
# the first path's directories are made, then the second fails.
mkdir -p "$TEST_TMP/f1"; echo 'not a directory' >"$TEST_TMP/f1/dir"
expect_exit 5 mirage-restore --device dev-hd --path /deep/a/b/report.txt --path /dir/sub/hard1 --to "$TEST_TMP/f1"
[ "$(cd "$TEST_TMP/f1" && find . -mindepth 1)" = ./dir ] || fail "a failed restore left: $(cd "$TEST_TMP/f1" && find . -mindepth 1)"
# A missing pack: the data of report.txt and random.bin sits in the first sync's packs,
# the listings of a second sync in new ones. The target is new: it goes too.
find "$MIRAGE_HOME/volumes" -name '*.pack' | sort >"$TEST_TMP/packs.1"
echo more >"$src/deep/a/b/more.txt"
mirage-centralize --root "$src" --device-id dev-hd --output json >/dev/null
mkdir -p "$TEST_TMP/away"
while read -r p; do mv "$p" "$TEST_TMP/away/"; done <"$TEST_TMP/packs.1"
expect_exit 6 mirage-restore --device dev-hd --path /deep/a/b/report.txt --path /dir/random.bin --to "$TEST_TMP/f2/new"
[ ! -e "$TEST_TMP/f2" ] || fail "a failed restore left: $(find "$TEST_TMP/f2")"
echo ok

#!/usr/bin/env bash
# Linux names are bytes: a revert on the device and a layer apply of a tree holding a name
# that is not UTF-8 ($'caf\xe9') and a name with a newline both work (the apply journal
# carries any name), and a kill -9 while staging or in the commit is mended by the next sync.
source "$(dirname "$0")/lib.sh"
need python3
T=$TEST_TMP
latin=$(printf 'caf\xe9'); nl=$(printf 'new\nline')

ep=$T/ep
mkdir -p "$ep/etc" "$ep/usr/bin" "$ep/usr/share/$latin" "$ep/home/alice"
printf 'conf\n' >"$ep/etc/$latin.conf"
printf 'nl\n' >"$ep/usr/bin/$nl"
printf 'inside\n' >"$ep/usr/share/$latin/$nl"
printf 'notes\n' >"$ep/home/alice/$latin"
centralize_accepted "$ep" ep-b >"$T/sync1.json"
S=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["snapshot_id"])' <"$T/sync1.json")
cp -a "$ep" "$T/at-s"

# Each name changed or removed, then the revert (full): every one comes back.
rm -rf "$ep/usr/share/$latin" "$ep/usr/bin/$nl"
printf 'edited\n' >"$ep/etc/$latin.conf"
printf 'edited\n' >"$ep/home/alice/$latin"
printf 'extra\n' >"$ep/usr/bin/$latin-extra"
mirage-centralize --root "$ep" --device-id ep-b --output json >/dev/null
expect_exit 0 mirage-restore --device ep-b --snapshot "$S" --on-device --mode full --output json
expect_exit 0 mirage-centralize --root "$ep" --device-id ep-b --output json
expect_contains "$OUT" '"mode":"full"'
expect_same_tree "$T/at-s" "$ep"

# kill -9 while staging, then in the middle of the commit, then a sync: each journal is
# read back (rolled back, then finished): the snapshot's tree.
rm -rf "$ep/usr/share/$latin"; printf 'again\n' >"$ep/etc/$latin.conf"
mirage-centralize --root "$ep" --device-id ep-b --output json >/dev/null
expect_exit 0 mirage-restore --device ep-b --snapshot "$S" --on-device --mode full --output json
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STAGE=1 mirage-centralize --root "$ep" --device-id ep-b --output json
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STEP=1 mirage-centralize --root "$ep" --device-id ep-b --output json
expect_exit 0 mirage-centralize --root "$ep" --device-id ep-b --output json
expect_same_tree "$T/at-s" "$ep"

# A layer holding such names, applied to the device.
lay=$T/layer
mkdir -p "$lay/opt/$latin" "$lay/etc"
printf 'layer\n' >"$lay/opt/$latin/$nl"
printf 'layer conf\n' >"$lay/etc/$nl.conf"
mirage-capture base --root "$lay" --name bytes --output json >/dev/null
mirage-assign --device ep-b --base bytes@1 --output json >/dev/null
expect_exit 0 mirage-centralize --root "$ep" --device-id ep-b --output json
[ "$(cat "$ep/opt/$latin/$nl")" = layer ] || fail "the layer's file with a byte name was not applied"
[ "$(cat "$ep/etc/$nl.conf")" = "layer conf" ] || fail "the layer's file with a newline name was not applied"
echo ok

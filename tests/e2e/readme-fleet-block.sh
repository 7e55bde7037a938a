#!/usr/bin/env bash
# The README's "A fleet server" block runs as given, in its order, against a real
# server: the block is extracted from README.md and run line by line with set -e, with
# only what cannot run here replaced (the address, the token, TLS, --watch and --follow,
# journalctl) and a test tree as the endpoint. A block that uses a policy before it is
# created, or a command that no longer exists, fails here.
source "$(dirname "$0")/lib.sh"
need python3 curl
python3 - "$MIRAGE_SOURCE/README.md" >"$TEST_TMP/block.sh" <<'PY'
import sys
text = open(sys.argv[1]).read()
start = text.index("A fleet server:")
block = text[text.index("```sh\n", start) + 6:]
print(block[:block.index("```")], end="")
PY
[ "$(wc -l <"$TEST_TMP/block.sh")" -gt 20 ] || fail "no fleet block in README.md"
grep -q 'mirage policy set kiosks' "$TEST_TMP/block.sh" || fail "the block changed: $(cat "$TEST_TMP/block.sh")"

# Beforehand: the layers the block assigns and a second device it forgets and deletes.
start_http_server "$TEST_TMP/srv"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
mkdir -p "$TEST_TMP/ref/etc" "$TEST_TMP/app/etc" "$TEST_TMP/kiosk1/etc" "$TEST_TMP/kiosk2/etc"
echo ref >"$TEST_TMP/ref/etc/motd"; cp -a "$TEST_TMP/ref/." "$TEST_TMP/app/"
echo nginx >"$TEST_TMP/app/etc/nginx.conf"
mirage-capture base --root "$TEST_TMP/ref" --name bookworm >/dev/null
for v in 1 2; do
  echo "v$v" >>"$TEST_TMP/app/etc/nginx.conf"
  mirage-capture app --before-root "$TEST_TMP/ref" --after-root "$TEST_TMP/app" --name nginx --on-base bookworm@1 >/dev/null
done
echo ber-kiosk-01 >"$TEST_TMP/kiosk1/etc/hostname"
echo other >"$TEST_TMP/kiosk2/etc/hostname"
centralize_accepted "$TEST_TMP/kiosk2" kiosk-02 >/dev/null
mirage-centralize --root "$TEST_TMP/kiosk2" --device-id kiosk-02 >/dev/null
first=$(mirage-restore snapshots --device kiosk-02 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["snapshot_id"])')
unset MIRAGE_SERVER MIRAGE_TOKEN

# What cannot run here, replaced line by line; everything else runs as written.
python3 - "$TEST_TMP/block.sh" "$TEST_TMP" "$first" >"$TEST_TMP/run.sh" <<'PY'
import re, sys
lines, tmp, first = open(sys.argv[1]).read().splitlines(), sys.argv[2], sys.argv[3]
out = ["set -e", "cd " + tmp]
for line in lines:
    if line.startswith("mirage-serverd "):
        continue  # the server is up (start_http_server: init, then serve on loopback)
    line = line.replace("https://mirage.example:8443", '"$SERVER_URL"').replace("mrg_...", '"$ADMIN_TOKEN"')
    if line.startswith("mirage-centralize --watch"):
        line = 'mirage-centralize --root "%s/kiosk1" --device-id kiosk-01 || [ $? = 5 ]  # registers, pending' % tmp
    if line.startswith("journalctl "):
        line = 'tail -3 "%s/server.log"' % tmp
    line = line.replace("--follow ", "").replace("/srv/mirage-2", tmp + "/mirage-2")
    line = line.replace("6ea142ad29cffd11", first)
    out.append(line)
print("\n".join(out))
PY
expect_exit 0 env SERVER_URL="$SERVER_URL" ADMIN_TOKEN="$ADMIN_TOKEN" bash "$TEST_TMP/run.sh"
expect_contains "$OUT" "mirage_devices_last_sync"
expect_contains "$OUT" "request method="
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
expect_exit 0 mirage device list --output json
python3 - "$OUT" <<'PY'
import json, sys
d = {x["device_id"]: x for x in json.loads(sys.argv[1])["devices"]}
assert list(d) == ["kiosk-01"], d                      # kiosk-02 deleted
k = d["kiosk-01"]
assert k["policy"] == "kiosks" and k["name"] == "lobby-kiosk" and k["tags"] == ["lobby"], k
assert k["pending_orders"] == 2, k                     # the pinned snapshot and nginx
PY
[ $? = 0 ] || fail "the block's effect: $OUT"
echo ok

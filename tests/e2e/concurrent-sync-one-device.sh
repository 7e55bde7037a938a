#!/usr/bin/env bash
# Two mirage-centralize processes on one endpoint state: while the first syncs (held
# before its commit, a layer order queued), the second is refused at once (exit 75,
# naming the first's pid) and touches nothing; the first then carries out its order
# (done) and its snapshot commits. A --watch that meets a running sync retries later.
source "$(dirname "$0")/lib.sh"
need python3 timeout
T=$TEST_TMP
ep=$T/ep
mkdir -p "$ep/etc" "$ep/home/u"; echo one >"$ep/etc/hostname"; echo notes >"$ep/home/u/notes"
centralize_accepted "$ep" one >/dev/null
mkdir -p "$T/layer/usr/bin"; printf 'tool\n' >"$T/layer/usr/bin/tool"
mirage-capture base --root "$T/layer" --name lb --output json >/dev/null
mirage-assign --device one --base lb --output json >/dev/null

MIRAGE_TEST_HOLD_BEFORE_COMMIT=$T/gate mirage-centralize --root "$ep" --device-id one --output json \
  >"$T/first.out" 2>"$T/first.err" &
first=$!
for _ in $(seq 1 600); do [ -e "$T/gate.held" ] && break; sleep 0.05; done
[ -e "$T/gate.held" ] || fail "the first sync never reached its commit: $(cat "$T/first.err")"
expect_exit 75 timeout 60 mirage-centralize --root "$ep" --device-id one --output json
expect_contains "$ERR" "another mirage-centralize (pid $first) is syncing device one"
[ ! -e "$ep/usr/bin/tool" ] || fail "the refused sync applied the order"
touch "$T/gate.go"
wait $first || fail "the first sync failed: $(cat "$T/first.err")"
python3 - "$T/first.out" <<'PY' || fail "the first sync's order was not carried out: $(cat "$T/first.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["state"] == "accepted" and d["order"]["order_id"], d
PY
[ "$(cat "$ep/usr/bin/tool")" = tool ] || fail "the layer was not applied"
expect_exit 0 mirage-assign status --device one --output json
expect_contains "$OUT" '"pending":[]'
# The lock goes with its holder: the next sync runs.
expect_exit 0 mirage-centralize --root "$ep" --device-id one --output json
echo ok

#!/usr/bin/env bash
# --compression auto (the default) stores new chunks at zstd level 1 to a local store
# and 3 over the network; a level given is used as given; anything else is a usage
# error naming the flag. Observed through bytes_sent of the same tree into fresh stores.
source "$(dirname "$0")/lib.sh"
cd "$TEST_TMP"
mkdir src
python3 - src/text <<'PY'
import random, sys
random.seed(7)
words = [("w%d" % i) * (i % 5 + 1) for i in range(4000)]
with open(sys.argv[1], "w") as f:
    for _ in range(400000):
        f.write(random.choice(words) + (" " if random.random() < 0.9 else "\n"))
PY
sent() {  # sent STORE [FLAGS...]: bytes_sent of a first sync of src into a fresh STORE
  local store=$1; shift
  export MIRAGE_HOME="$TEST_TMP/$store"
  expect_exit 5 mirage-centralize --root src --device-id d --state "$store.state"
  mirage-centralize accept d >/dev/null
  expect_exit 0 mirage-centralize --root src --device-id d --state "$store.state" --output json "$@"
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["stats"]["bytes_sent"])' "$OUT"
}
auto=$(sent auto)
one=$(sent one --compression 1)
three=$(sent three --compression 3)
echo "bytes sent: auto $auto, level 1 $one, level 3 $three"
[ "$auto" = "$one" ] || fail "auto to a local store sent $auto bytes, level 1 sends $one"
[ "$one" != "$three" ] || fail "levels 1 and 3 sent the same bytes: the level is not used"
# Over HTTP auto means level 3.
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
expect_exit 5 mirage-centralize --root src --device-id h --state h.state
mirage-centralize accept h >/dev/null
expect_exit 0 mirage-centralize --root src --device-id h --state h.state --output json
http=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["stats"]["bytes_sent"])' "$OUT")
[ "$http" = "$three" ] || fail "auto over HTTP sent $http bytes, level 3 sends $three"
stop_server
for bad in 20 -8 fast 3x ""; do
  expect_exit 2 mirage-centralize --root src --device-id d --state x.state --compression "$bad"
  expect_contains "$ERR$OUT" "--compression"
done
echo ok

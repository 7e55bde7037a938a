#!/usr/bin/env bash
# Device credentials over HTTP: an endpoint registers without a token (pending); once an
# admin accepts it, it syncs with its own credential (STATE/credential, only its SHA-256
# on the server) and nothing else: another device's CVD and admin methods are refused
# (exit 4); a second registration of its id without the credential waits for an admin
# (exit 5) and gets nothing.
source "$(dirname "$0")/lib.sh"
need python3
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL"
a=$TEST_TMP/a; b=$TEST_TMP/b
mkdir -p "$a" "$b"; printf 'a\n' >"$a/f"; printf 'b\n' >"$b/f"

# A first registration the server refuses for what it says (a hostname with an escape)
# records nothing, and leaves no credential behind: once the hostname is mended, the
# device registers (pending, 5), not "unknown token" for ever.
mkdir -p "$a/etc"; printf 'bad\033name\n' >"$a/etc/hostname"
expect_exit 2 mirage-centralize --root "$a" --device-id dev-a --output json
expect_contains "$ERR" "hostname"
[ ! -e "$MIRAGE_HOME/endpoint/dev-a/credential" ] || fail "a refused first registration left its credential"
printf 'host-a\n' >"$a/etc/hostname"
expect_exit 5 mirage-centralize --root "$a" --device-id dev-a --output json
expect_contains "$OUT" '"state":"pending"'
[ "$(stat -c %a "$MIRAGE_HOME/endpoint/dev-a/credential")" = 600 ] || fail "credential file is not private"
secret=$(cat "$MIRAGE_HOME/endpoint/dev-a/credential")
if grep -aq "$secret" "$TEST_TMP/server/catalog.db"; then fail "the credential is stored in clear"; fi
# Pending: the credential is not valid yet, and says so (5: wait for an admin, not 4).
expect_exit 5 env MIRAGE_TOKEN="mdc_dev-a.$secret" mirage-restore snapshots --device dev-a
expect_contains "$ERR" "pending"
expect_exit 5 mirage-centralize --root "$b" --device-id dev-b --output json
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept dev-a >/dev/null
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-centralize accept dev-b >/dev/null

expect_exit 0 mirage-centralize --root "$a" --device-id dev-a --output json
expect_contains "$OUT" '"snapshot_id"'
expect_exit 0 mirage-centralize --root "$b" --device-id dev-b --output json
# A set but empty MIRAGE_TOKEN is no token: the device still uses its credential.
MIRAGE_TOKEN= expect_exit 0 mirage-centralize --root "$b" --device-id dev-b --output json

# An order carried out with the device's own credential (layers, chunks, the report).
mkdir -p "$TEST_TMP/layer/usr/bin"; printf 'tool\n' >"$TEST_TMP/layer/usr/bin/tool"
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-capture base --root "$TEST_TMP/layer" --name lb --output json >/dev/null
MIRAGE_TOKEN=$ADMIN_TOKEN mirage-assign --device dev-a --base lb --output json >/dev/null
expect_exit 0 mirage-centralize --root "$a" --device-id dev-a --output json
expect_contains "$OUT" '"order_id"'
[ "$(cat "$a/usr/bin/tool")" = tool ] || fail "the order was not carried out with the device credential"

# dev-a's credential used for dev-b, for admin work, or for a layer capture: refused.
expect_exit 4 env MIRAGE_TOKEN="mdc_dev-a.$secret" mirage-centralize --root "$b" --device-id dev-b --state "$TEST_TMP/s" --output json
expect_contains "$ERR" "own CVD"
expect_exit 4 env MIRAGE_TOKEN="mdc_dev-a.$secret" mirage-centralize devices --output json
expect_exit 4 env MIRAGE_TOKEN="mdc_dev-a.$secret" mirage-restore snapshots --device dev-b
expect_exit 4 env MIRAGE_TOKEN="mdc_dev-a.wrongsecret" mirage-centralize --root "$a" --device-id dev-a --output json
# Someone else claiming dev-a's id without its credential waits for an admin's
# re-enrolment (tests/e2e/recovery-disk-loss.sh), gets nothing, and dev-a still syncs.
expect_exit 5 mirage-centralize --root "$a" --device-id dev-a --state "$TEST_TMP/impostor" --output json
expect_contains "$OUT" '"state":"reenroll"'
expect_exit 5 env MIRAGE_TOKEN="mdc_dev-a.$(cat "$TEST_TMP/impostor/credential")" mirage-restore snapshots --device dev-a
expect_exit 0 mirage-centralize --root "$a" --device-id dev-a --output json
# Without any token only registration is open.
expect_exit 4 mirage-restore snapshots --device dev-a
expect_contains "$ERR" "token"
echo ok

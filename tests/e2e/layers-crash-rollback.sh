#!/usr/bin/env bash
# An apply killed while staging is rolled back by the next sync to exactly the endpoint
# it was before, directory times included: staging writes temporaries into existing
# directories (changing their mtime), and the rollback sets those times back.
source "$(dirname "$0")/lib.sh"
need python3
T=$TEST_TMP
ref=$T/ref
mkdir -p "$ref"/{etc,usr/bin,usr/lib/tool,usr/share/doc}
for i in $(seq 1 12); do
  printf 'config %d v1\n' "$i" >"$ref/etc/conf$i"
  head -c $((20000 + i * 1000)) /dev/urandom >"$ref/usr/lib/tool/lib$i.so"
  printf 'doc %d\n' "$i" >"$ref/usr/share/doc/doc$i"
done
printf '#!/bin/sh\n' >"$ref/usr/bin/tool"; chmod 755 "$ref/usr/bin/tool"
mirage-capture base --root "$ref" --name rb --output json >/dev/null
ep=$T/ep; cp -a "$ref" "$ep"
centralize_accepted "$ep" ep-rb >/dev/null
mirage-assign --device ep-rb --base rb@1 --output json >/dev/null
mirage-centralize --root "$ep" --device-id ep-rb --output json >/dev/null

# Version 2 changes files in every directory and adds a directory.
ref2=$T/ref2; cp -a "$ref" "$ref2"
for i in $(seq 1 12); do
  printf 'config %d v2\n' "$i" >"$ref2/etc/conf$i"
  head -c 30000 /dev/urandom >"$ref2/usr/lib/tool/lib$i.so"
  printf 'doc %d v2\n' "$i" >"$ref2/usr/share/doc/doc$i"
done
mkdir -p "$ref2/usr/lib/tool/plugins"; printf 'plugin\n' >"$ref2/usr/lib/tool/plugins/p1"
mirage-capture base --root "$ref2" --name rb --output json >/dev/null
mirage-assign --device ep-rb --base rb@2 --output json >/dev/null
# The endpoint's own file where v2 has a directory: staging sets it aside, a rollback puts it back.
printf 'my own plugins list\n' >"$ep/usr/lib/tool/plugins"
# Old directory times, so any change made by staging shows.
find "$ep" -type d -exec touch -h -d '2020-01-02 03:04:05.123456789' {} +
listing "$ep" >"$T/before"

# Killed (like kill -9) before staging entry 20: temporaries sit in etc/, usr/lib/tool/...
expect_exit 99 env MIRAGE_TEST_CRASH_AT_STAGE=20 mirage-centralize --root "$ep" --device-id ep-rb --output json
ls -a "$ep/etc" | grep -q '^\.mirage-new-' || fail "the crash left no staging temporary: the test does not reach staging"
[ -d "$ep/usr/lib/tool/plugins" ] && [ -f "$ep/usr/lib/tool/plugins.mirage-local" ] ||
  fail "staging did not set the endpoint's own file aside for the new directory"
# The next sync rolls back first (stopped before its commit, so nothing else changes).
expect_exit 99 env MIRAGE_TEST_CRASH_BEFORE_COMMIT=1 mirage-centralize --root "$ep" --device-id ep-rb --output json
expect_contains "$ERR" "rolled back"
listing "$ep" >"$T/recovered"
diff -u "$T/before" "$T/recovered" >&2 || fail "the rolled-back endpoint is not what it was before the apply"

# A full sync then carries the order out.
mirage-centralize --root "$ep" --device-id ep-rb --output json >/dev/null
[ "$(cat "$ep/etc/conf7")" = "config 7 v2" ] || fail "the order was not carried out after the rollback"
[ -f "$ep/usr/lib/tool/plugins/p1" ] || fail "the new directory of v2 is missing"
[ "$(cat "$ep/usr/lib/tool/plugins.mirage-local")" = "my own plugins list" ] || fail "the endpoint's own file was not kept aside"
echo ok

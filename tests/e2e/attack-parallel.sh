#!/usr/bin/env bash
# Requests of different callers never wait on one another's work (issue 10): while an
# admin's check --read-data reads the whole store again and again, anonymous
# server.info calls keep answering quickly. Before pooled connections every handler
# shared one lock, and each server.info waited for the check in progress.
source "$(dirname "$0")/lib.sh"
need python3
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
src="$TEST_TMP/src"; mkdir -p "$src"
for i in 1 2 3 4 5 6 7 8; do head -c 25000000 /dev/urandom >"$src/big$i.bin"; done
centralize_accepted "$src" bulky >/dev/null
# LIMIT: how long a server.info may take at worst; the slow request must take at
# least 1.5 times that, or the test would prove nothing (attack.py checks both).
# Under the sanitizers everything is slower (the check too): a looser bound there.
limit=0.2
[ -n "${ASAN_OPTIONS:-}${TSAN_OPTIONS:-}" ] && limit=0.5
python3 "$MIRAGE_SOURCE/tests/e2e/attack.py" "$SERVER_URL" parallel "$ADMIN_TOKEN" bulky 6 "${LIMIT:-$limit}"
echo ok

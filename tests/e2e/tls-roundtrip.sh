#!/usr/bin/env bash
# HTTPS: the server serves with --tls-cert/--tls-key (OpenSSL); a client that trusts the
# CA (--ca-file) syncs and restores; one that does not, or trusts another CA, is refused
# with a certificate error that says how to trust it (exit 4); --ca-file or MIRAGE_CA_FILE
# trusts it; a bad certificate file stops the server with
# a usage error. A server that drops the connection in the middle of the handshake (as
# one killed or restarting does) is unreachable (exit 75, retried), not a refusal.
source "$(dirname "$0")/lib.sh"
need openssl python3
pki=$TEST_TMP/pki
make_pki "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Other CA" \
  -keyout "$pki/other.key" -out "$pki/other.pem" 2>/dev/null

mirage-serverd init --data "$TEST_TMP/bad" >/dev/null
expect_exit 2 mirage-serverd --data "$TEST_TMP/bad" --listen 127.0.0.1:1 --tls-cert "$pki/ca.key" --tls-key "$pki/ca.key"
expect_contains "$ERR" "--tls-cert $pki/ca.key"
# Each file is named: a key that is not a key, a key that is not the certificate's.
expect_exit 2 mirage-serverd --data "$TEST_TMP/bad" --listen 127.0.0.1:1 --tls-cert "$pki/server.pem" --tls-key "$pki/server.pem"
expect_contains "$ERR" "--tls-key $pki/server.pem: not a PEM private key"
expect_exit 2 mirage-serverd --data "$TEST_TMP/bad" --listen 127.0.0.1:1 --tls-cert "$pki/server.pem" --tls-key "$pki/other.key"
expect_contains "$ERR" "is not the key of --tls-cert"

start_http_server "$TEST_TMP/server" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
expect_contains "$SERVER_URL" "https://"
# http:// to the TLS port: unreachable (75), with the scheme named as the likely cause.
MIRAGE_TOKEN=$ADMIN_TOKEN expect_exit 75 mirage device list --server "http://${SERVER_URL#https://}"
expect_contains "$ERR" "https://"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
src=$TEST_TMP/src; make_every_kind "$src"

expect_exit 4 mirage-centralize --root "$src" --device-id dev-tls --output json
expect_contains "$ERR" "certificate is not trusted"
expect_contains "$ERR" "--ca-file FILE or MIRAGE_CA_FILE"
expect_contains "$ERR" '"reason":"untrusted_certificate"'
expect_exit 4 mirage device list --output text
expect_contains "$ERR" "mirage: error: server $SERVER_URL: its TLS certificate is not trusted"
MIRAGE_CA_FILE="$pki/ca.pem" mirage device list --output json >/dev/null || fail "MIRAGE_CA_FILE is not read"
expect_exit 4 mirage-centralize --ca-file "$pki/other.pem" --root "$src" --device-id dev-tls --output json
expect_contains "$ERR" "certificate"

expect_exit 5 mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-tls --output json
mirage-centralize --ca-file "$pki/ca.pem" accept dev-tls >/dev/null
expect_exit 0 mirage-centralize --ca-file "$pki/ca.pem" --root "$src" --device-id dev-tls --output json
MIRAGE_CA_FILE="$pki/ca.pem" mirage-restore --device dev-tls --path / --to "$TEST_TMP/back" >/dev/null
expect_same_tree "$src" "$TEST_TMP/back"

python3 - "$TEST_TMP/drop-port" <<'PY' &
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
s.settimeout(30)
c, _ = s.accept(); c.recv(16); c.close()   # reads the start of the ClientHello, then hangs up
PY
dropper=$!
for _ in $(seq 1 50); do [ -s "$TEST_TMP/drop-port" ] && break; sleep 0.1; done
expect_exit 75 mirage-centralize --server "https://127.0.0.1:$(cat "$TEST_TMP/drop-port")" --ca-file "$pki/ca.pem" \
  --root "$src" --device-id dev-tls --output json
wait "$dropper"
echo ok

#!/usr/bin/env bash
# Every role against every method over HTTP: allowed calls get past the role check
# (they may still fail for other reasons: unknown device, missing parameter), refused
# ones get a permission error (HTTP 403/401 body, code "permission"). The expected
# matrix is written here independently of the server's table; tokens are stored hashed.
source "$(dirname "$0")/lib.sh"
need python3 curl
start_http_server "$TEST_TMP/server"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN"
declare -A TOKEN=([admin]=$ADMIN_TOKEN)
for role in image-manager protection-manager helpdesk; do
  TOKEN[$role]=$(mirage token create --name "t-$role" --role "$role" --output json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
done
expect_exit 2 mirage token create --name bad --role superuser
expect_exit 5 mirage token create --name t-helpdesk --role helpdesk
expect_exit 0 mirage token list --output json
expect_contains "$OUT" '"role":"helpdesk"'
case "$OUT" in *mrg_*) fail "token list shows a secret" ;; esac
if grep -aq "${TOKEN[helpdesk]}" "$TEST_TMP/server/catalog.db"; then fail "a token is stored in clear"; fi

A=admin; I=image-manager; P=protection-manager; H=helpdesk
# method|params|roles allowed
matrix=$(cat <<'M'
server.info|{}|A I P H
device.list|{}|A I P H
device.status|{"device_id":"nodev"}|A I P H
snapshot.list|{"device_id":"nodev"}|A I P H
layer.list|{}|A I P H
layer.get|{"ref":"nolayer"}|A I P H
events.list|{}|A I P H
order.get|{"order_id":"noorder"}|A I P H
policy.get|{}|A I P H
chunks.get|{}|A I P H
chunks.missing|{}|A I P H
chunks.delta|{}|A I P H
device.register|{"device_id":"new-dev"}|A
snapshot.commit|{"device_id":"nodev"}|A
order.next|{"device_id":"nodev"}|A
order.report|{"order_id":"noorder"}|A
chunks.put|{"device_id":"nodev"}|A
chunks.put|{}|A I
check|{"read_data":false}|A
store.stats|{"device_id":"nodev"}|A I P H
token.create|{"name":"x"}|A
token.list|{}|A
token.revoke|{"name":"nosuch"}|A
token.rotate|{"name":"nosuch"}|A
device.delete|{"device_id":"nodev"}|A
device.accept|{"device_id":"nodev"}|A P
device.accept|{"device_id":"nodev","reference":true}|A I P
device.reject|{"device_id":"nodev"}|A P
policy.set|{"name":"p"}|A P
layer.commit|{"name":"l"}|A I
capture.begin|{"device_id":"nodev"}|A I
capture.get|{"device_id":"nodev"}|A I
order.create|{"device_ids":["nodev"],"base":"b"}|A I
order.create|{"device_ids":["nodev"],"type":"provision","base":"b"}|A I
order.create|{"device_ids":["nodev"],"type":"enforce"}|A I H
order.revert|{"device":"nodev","snapshot":"nosnap"}|A P H
migrate.check|{"device_ids":["nodev"]}|A
migrate.reports|{"device_ids":["nodev"]}|A I P H
migrate.start|{"device_ids":["nodev"],"base":"b"}|A
migrate.rollback|{"device_id":"nodev"}|A
policy.list|{}|A I P H
policy.assign|{"name":"nopolicy","device_ids":["nodev"]}|A P
collection.list|{}|A I P H
collection.get|{"name":"nocoll"}|A I P H
collection.set|{"name":"c","device_ids":["nodev"]}|A I P
collection.delete|{"name":"nocoll"}|A I P
device.tag|{"device_id":"nodev"}|A I P
device.rename|{"device_id":"nodev","name":"n"}|A I P
device.reenroll|{"device_id":"nodev"}|A
device.replace|{"device_id":"nodev","from_device":"nodev2"}|A
snapshot.forget|{"snapshot_id":"nosnap"}|A P
layer.delete|{"ref":"nolayer@1"}|A I
volume.list|{}|A I P H
volume.add|{"path":"relative"}|A
volume.set|{"volume_id":999,"read_only":true}|A
gc.run|{"dry_run":true}|A
snapshot.request|{"device_ids":["nodev"]}|A P
order.pending|{"device_id":"nodev"}|A
events.report|{"type":"restore","device_id":"nodev"}|A I P H
events.report|{"type":"old_root_removed","device_id":"nodev","migration_id":"ab","reason":"rollback"}|A
M
)
# The matrix names every method the server has (a new one must be added here).
methods=$(mirage-serverd methods --output json | python3 -c 'import json,sys; print(" ".join(sorted({r["method"] for r in json.load(sys.stdin)["methods"]})))')
[ "$(wc -w <<<"$methods")" -ge 40 ] || fail "mirage-serverd methods lists only: $methods"
for m in $methods; do
  grep -q "^$m|" <<<"$matrix" || fail "method $m is not in the role matrix"
done
checked=0
while IFS='|' read -r method params allowed; do
  for role in admin image-manager protection-manager helpdesk; do
    short=${role:0:1}; short=${short^^}
    printf '{"v":1,"id":1,"method":"%s","params":%s}\n' "$method" "$params" >"$TEST_TMP/request"
    code=$(curl -s -o "$TEST_TMP/reply" -H "Authorization: Bearer ${TOKEN[$role]}" \
      --data-binary "@$TEST_TMP/request" -w '%{http_code}' "$SERVER_URL/v1/rpc")
    # Every request is well-formed: a reply about the frame would make the check meaningless.
    if grep -q 'malformed' "$TEST_TMP/reply"; then fail "test request not understood: $(cat "$TEST_TMP/reply")"; fi
    refused=no
    grep -q '"code":"permission"' "$TEST_TMP/reply" && refused=yes
    case " $allowed " in
      *" $short "*) [ $refused = no ] || fail "$role refused $method $params: $(cat "$TEST_TMP/reply")" ;;
      *) [ $refused = yes ] || fail "$role allowed $method $params (HTTP $code): $(cat "$TEST_TMP/reply")"
         [ "$code" = 403 ] || [ "$code" = 401 ] || fail "$role refused $method with HTTP $code" ;;
    esac
    checked=$((checked + 1))
  done
done <<<"$matrix"
[ $checked = $(( $(wc -l <<<"$matrix") * 4 )) ] || fail "checked $checked cells"

# A revoked token is refused from then on.
mirage token revoke t-helpdesk --output json >/dev/null
expect_exit 4 env MIRAGE_TOKEN="${TOKEN[helpdesk]}" mirage-centralize devices --output json
expect_contains "$ERR" "revoked"
echo ok

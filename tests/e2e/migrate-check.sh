#!/usr/bin/env bash
# mirage-migrate check over HTTPS: two devices centralize small hand-written bookworm
# trees; one has a third-party apt source, DSA host keys, a held package and a
# half-installed one. `check` reads their latest snapshots on the server and reports the
# exact finding codes, exits 5 when a device has an inhibitor and 0 when none has; the
# server keeps each device's latest report and a collection is summarized. Also the
# rules subcommand: the shipped default, a file checked (errors name the field), paths
# explained; hostile rules files (endless, over 1 MiB, deeply nested, a '..' glob)
# refused; and a migration of a blocked device refused.
source "$(dirname "$0")/lib.sh"
need python3 openssl
pki=$TEST_TMP/pki
make_pki "$pki"
start_http_server "$TEST_TMP/server" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
export MIRAGE_SERVER="$SERVER_URL" MIRAGE_TOKEN="$ADMIN_TOKEN" MIRAGE_CA_FILE="$pki/ca.pem"

stanza() { printf 'Package: %s\nStatus: %s\nArchitecture: %s\nVersion: 1.0\n\n' "$1" "$2" "${3:-amd64}"; }
# bookworm_tree DIR: a clean bookworm system in miniature.
bookworm_tree() {
  mkdir -p "$1/etc/apt/sources.list.d" "$1/etc/ssh" "$1/var/lib/dpkg" "$1/home/ana"
  echo 12.8 >"$1/etc/debian_version"
  echo "${2:-pc}" >"$1/etc/hostname"
  { stanza dpkg "install ok installed"; stanza bash "install ok installed"; stanza vim "install ok installed"; } \
    >"$1/var/lib/dpkg/status"
  printf 'amd64\ni386\n' >"$1/var/lib/dpkg/arch"
  echo "deb http://deb.debian.org/debian bookworm main contrib" >"$1/etc/apt/sources.list"
  echo "deb http://security.debian.org/debian-security bookworm-security main" >>"$1/etc/apt/sources.list"
  echo ed25519 >"$1/etc/ssh/ssh_host_ed25519_key"
  echo "thesis" >"$1/home/ana/thesis.txt"
}
bookworm_tree "$TEST_TMP/clean" pc-clean
bookworm_tree "$TEST_TMP/risky" pc-risky
echo "deb [signed-by=/etc/apt/keyrings/vendor.asc] https://repo.vendor.example/apt bookworm stable" \
  >"$TEST_TMP/risky/etc/apt/sources.list.d/vendor.list"
echo dsa >"$TEST_TMP/risky/etc/ssh/ssh_host_dsa_key"
echo dsa.pub >"$TEST_TMP/risky/etc/ssh/ssh_host_dsa_key.pub"
{ stanza heldpkg "hold ok installed"; stanza halfpkg "install reinstreq half-installed"; stanza vendor-app "install ok installed"; } \
  >>"$TEST_TMP/risky/var/lib/dpkg/status"

# The new base: trixie's dpkg database and apt lists in miniature (vim has a candidate,
# vendor-app and heldpkg do not).
base=$TEST_TMP/trixie
mkdir -p "$base/var/lib/dpkg" "$base/var/lib/apt/lists" "$base/etc" "$base/usr/bin"
echo 13.1 >"$base/etc/debian_version"
{ stanza dpkg "install ok installed"; stanza bash "install ok installed"; } >"$base/var/lib/dpkg/status"
printf 'Package: dpkg\n\nPackage: bash\n\nPackage: vim\n\n' \
  >"$base/var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages"
head -c 200000 /dev/urandom >"$base/usr/bin/big"
mirage-capture base --root "$base" --name trixie --output json >/dev/null

centralize_accepted "$TEST_TMP/clean" pc-clean >/dev/null
centralize_accepted "$TEST_TMP/risky" pc-risky >/dev/null

codes() { python3 -c '
import json, sys
r = json.load(sys.stdin)
for d in r["devices"]:
    print(d["device_id"], ",".join(f["code"] for f in d.get("findings", [])) or "-", d.get("inhibited"))'; }

# The device with every problem: exit 5, each code exactly.
expect_exit 5 mirage-migrate check --device pc-risky --base trixie --output json
[ "$(codes <<<"$OUT")" = "pc-risky dpkg.audit,packages.held,apt.unmappable-source,ssh.dsa-host-key,packages.no-candidate True" ] ||
  fail "codes: $(codes <<<"$OUT")"
python3 - "$OUT" <<'PY' || fail "report details"
import json, sys
r = json.loads(sys.argv[1])
d = r["devices"][0]
f = {x["code"]: x for x in d["findings"]}
assert r["base"] == "trixie@1", r["base"]
assert f["dpkg.audit"]["packages"] == ["halfpkg"], f["dpkg.audit"]
assert f["packages.held"]["packages"] == ["heldpkg"]
assert f["apt.unmappable-source"]["paths"] == ["/etc/apt/sources.list.d/vendor.list:1"]
assert f["ssh.dsa-host-key"]["paths"] == ["/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"]
assert f["packages.no-candidate"]["packages"] == ["heldpkg", "vendor-app"], f["packages.no-candidate"]
assert all(x["severity"] == "inhibitor" for x in d["findings"])
assert d["free_bytes"] > 0 and d["hostname"] == "pc-risky" and d["snapshot_id"]
PY

# The clean device: nothing, exit 0; without --base the checks needing it are unknown (warnings).
expect_exit 0 mirage-migrate check --device pc-clean --base trixie --output json
[ "$(codes <<<"$OUT")" = "pc-clean - False" ] || fail "clean: $(codes <<<"$OUT")"
expect_exit 0 mirage-migrate check --device pc-clean --output json
[ "$(codes <<<"$OUT")" = "pc-clean disk.free-unknown,packages.unknown False" ] || fail "no base: $(codes <<<"$OUT")"

# A collection: both, summarized; one blocked is exit 5.
mirage collection create office --device pc-clean --device pc-risky >/dev/null
expect_exit 5 mirage-migrate check --collection office --base trixie --output json
python3 - "$OUT" <<'PY' || fail "summary: $OUT"
import json, sys
s = json.loads(sys.argv[1])["summary"]
assert s["devices"] == 2 and s["inhibited"] == 1 and s["clean"] == 1 and s["errors"] == 0, s
assert s["codes"] == {"apt.unmappable-source": 1, "dpkg.audit": 1, "packages.held": 1,
                      "packages.no-candidate": 1, "ssh.dsa-host-key": 1}, s["codes"]
PY
# The readable table names the codes and says which device is blocked.
expect_exit 5 mirage-migrate check --collection office --base trixie --output text
expect_contains "$OUT" "device pc-risky (pc-risky)"
expect_contains "$OUT" "(blocked)"
expect_contains "$OUT" "ssh.dsa-host-key"
expect_contains "$OUT" "2 devices: 1 blocked, 1 clean, 0 not checked"

# Fixing the device and syncing again clears its findings (the check reads the latest snapshot).
rm "$TEST_TMP/risky/etc/ssh/ssh_host_dsa_key" "$TEST_TMP/risky/etc/ssh/ssh_host_dsa_key.pub" \
  "$TEST_TMP/risky/etc/apt/sources.list.d/vendor.list"
mirage-centralize --root "$TEST_TMP/risky" --device-id pc-risky --output json >/dev/null
expect_exit 5 mirage-migrate check --device pc-risky --base trixie --output json
[ "$(codes <<<"$OUT")" = "pc-risky dpkg.audit,packages.held,packages.no-candidate True" ] || fail "after fix: $(codes <<<"$OUT")"

# The server kept each device's latest report: --stored prints them without checking (any role).
expect_exit 5 mirage-migrate check --stored --collection office --output json
python3 - "$OUT" <<'PY' || fail "stored: $OUT"
import json, sys
d = {x["device_id"]: x for x in json.loads(sys.argv[1])["devices"]}
assert [f["code"] for f in d["pc-risky"]["findings"]] == ["dpkg.audit", "packages.held", "packages.no-candidate"], d
assert d["pc-clean"]["findings"] == [] and d["pc-clean"]["base"] == "trixie@1", d["pc-clean"]
PY
expect_exit 2 mirage-migrate check --stored --base trixie --device pc-clean

# Only admins check; the call is audited.
desk=$(mirage token create --role helpdesk --name desk --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
expect_exit 4 env MIRAGE_TOKEN="$desk" mirage-migrate check --device pc-clean --output json
expect_exit 5 env MIRAGE_TOKEN="$desk" mirage-migrate check --stored --device pc-risky --output json
expect_exit 0 mirage events --output json
expect_contains "$OUT" '"migrate.check"'
# An unknown base layer exits 3.
expect_exit 3 mirage-migrate check --device pc-clean --base no-such-base --output json

# Rules: the default prints and checks; a bad file names the field; paths are explained.
mirage-migrate rules --default >"$TEST_TMP/rules.json"
expect_exit 0 mirage-migrate rules --check "$TEST_TMP/rules.json" --output json
expect_contains "$OUT" '"valid":true'
expect_contains "$OUT" '"name":"debian-12-to-13"'
python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); d["components"][3]["exclude"] = ["etc/x"]
json.dump(d, open(sys.argv[1], "w"))' "$TEST_TMP/rules.json"
expect_exit 2 mirage-migrate rules --check "$TEST_TMP/rules.json" --output text
expect_contains "$ERR" "rules: components[3].exclude[0]: 'etc/x'"
expect_exit 0 mirage-migrate rules --explain /etc/sudoers.d/admins /etc/sudoers.d/README /etc/ssh/ssh_host_dsa_key \
  /home/ana/thesis.txt /usr/bin/ls --output json
python3 - "$OUT" <<'PY' || fail "explain: $OUT"
import json, sys
p = {e["path"]: e for e in json.loads(sys.argv[1])["paths"]}
assert p["/etc/sudoers.d/admins"]["component"] == "sudoers" and p["/etc/sudoers.d/admins"]["action"] == "keep-endpoint"
assert p["/etc/sudoers.d/README"]["outcome"] == "excluded"
assert p["/etc/ssh/ssh_host_dsa_key"]["outcome"] == "unconditional-exclude"
assert p["/home/ana/thesis.txt"]["action"] == "keep-in-place"
assert p["/usr/bin/ls"]["outcome"] == "unmatched" and p["/usr/bin/ls"]["action"] == "not-carried"
PY
printf '{"version":1,"components":[{"name":"all","action":"take-new","include":["/*"]}]}' |
  mirage-migrate rules --explain /etc/passwd --rules - --output json >"$TEST_TMP/explain.json"
expect_contains "$(cat "$TEST_TMP/explain.json")" '"component":"all"'
expect_exit 2 mirage-migrate rules --default --check x
# Hostile rules files, each refused (exit 2) naming what was wrong, within 2 GB of memory:
# endless (/dev/zero, as a file and on stdin), over 1 MiB, nested 100,000 deep where a
# number or a string goes, a '..' component in a glob.
# (Under the sanitizers the address-space limit cannot hold their shadow memory: the
# sanitizer's own resident-memory cap stands in for it.)
if [ -z "${ASAN_OPTIONS:-}${TSAN_OPTIONS:-}" ]; then
  bounded() { bash -c 'ulimit -v 2000000; exec "$@"' bounded "$@"; }
else
  bounded() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}hard_rss_limit_mb=2000" \
      TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}hard_rss_limit_mb=2000" "$@"
  }
fi
expect_exit 2 bounded mirage-migrate rules --check /dev/zero
expect_contains "$ERR" "--check /dev/zero: larger than 1048576 bytes"
expect_exit 2 bounded mirage-migrate rules --explain /etc/passwd --rules - </dev/zero
expect_contains "$ERR" "--rules - (stdin): larger than 1048576 bytes"
expect_exit 2 bounded mirage-migrate --device pc-clean --base trixie --rules /dev/zero
expect_contains "$ERR" "larger than 1048576 bytes"
python3 -c 'import json; print(json.dumps({"version": 1, "description": "x" * 1100000, "components": []}))' >"$TEST_TMP/big.json"
expect_exit 2 bounded mirage-migrate rules --check "$TEST_TMP/big.json"
expect_contains "$ERR" "larger than 1048576 bytes"
n=100000
python3 -c "import sys; n = $n; sys.stdout.write('{\"version\": ' + '[' * n + ']' * n + ', \"components\": []}')" >"$TEST_TMP/deep.json"
expect_exit 2 bounded mirage-migrate rules --check "$TEST_TMP/deep.json"
expect_contains "$ERR" "rules: version: unsupported version array (1)"
python3 -c "import sys; n = $n; sys.stdout.write('{\"version\": 1, \"components\": [{\"name\": \"a\", \"action\": \"take-new\", \"include\": [\"/a\"], \"description\": ' + '[' * n + ']' * n + '}]}')" >"$TEST_TMP/deep2.json"
expect_exit 2 bounded mirage-migrate rules --check "$TEST_TMP/deep2.json"
expect_contains "$ERR" "rules: components[0].description: must be a string"
printf '{"version":1,"components":[{"name":"up","action":"take-new","include":["/etc/../root/.ssh"]}]}' >"$TEST_TMP/dots.json"
expect_exit 2 mirage-migrate rules --check "$TEST_TMP/dots.json"
expect_contains "$ERR" "'..' components are not allowed"

# The migration (migrate-synthetic.sh carries one out): a blocked device is refused
# without --force (exit 5) and nothing is queued; there is nothing to roll back (exit 3).
expect_exit 5 mirage-migrate --device pc-risky --base trixie
expect_contains "$ERR" "inhibitors"
expect_exit 0 mirage-assign status --device pc-risky --output json
expect_contains "$OUT" '"pending":[]'
expect_exit 3 mirage migrate --rollback --device pc-clean
expect_contains "$ERR" "no finished migration"
echo ok

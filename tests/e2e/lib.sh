# Shared helpers for end-to-end tests: they run the real binaries on real trees.
# Each test gets a fresh data directory; exit 77 means skipped.
set -euo pipefail

: "${MIRAGE_BIN:?MIRAGE_BIN must point at the build directory}"
: "${MIRAGE_SOURCE:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export PATH="$MIRAGE_BIN:$PATH"
TEST_TMP=$(mktemp -d /tmp/mirage-e2e.XXXXXX)
export MIRAGE_HOME="$TEST_TMP/home"
unset MIRAGE_SERVER MIRAGE_TOKEN
# descendants PID: every process below PID, deepest last.
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$child"; descendants "$child"; done
}
# On exit, whatever a test left running (a watcher, an attack, a server after a failed
# check) is stopped: a process that outlives the test holds ctest's output pipe, and
# ctest waits for that pipe for ever.
cleanup() {
  local left
  left=$(descendants $$)  # (the listing's own processes are gone by the kill)
  if [ -n "$left" ]; then
    kill $left 2>/dev/null || true
    sleep 0.2
    kill -9 $(descendants $$) 2>/dev/null || true
  fi
  if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TEST_TMP"; fi
}
trap cleanup EXIT
source "$MIRAGE_SOURCE/tests/pki.sh"

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
need() { for t in "$@"; do command -v "$t" >/dev/null || skip "needs $t"; done; }

# expect_exit CODE CMD...: runs CMD, fails unless it exits with CODE; its stdout is in $OUT, stderr in $ERR.
expect_exit() {
  local want=$1; shift
  set +e
  "$@" >"$TEST_TMP/.stdout" 2>"$TEST_TMP/.stderr"
  local got=$?
  set -e
  OUT=$(cat "$TEST_TMP/.stdout"); ERR=$(cat "$TEST_TMP/.stderr")
  [ "$got" = "$want" ] || fail "expected exit $want, got $got from: $*
stdout: $OUT
stderr: $ERR"
}

# expect_contains HAYSTACK NEEDLE
expect_contains() { case "$1" in *"$2"*) ;; *) fail "expected '$2' in: $1" ;; esac; }

# listing DIR: every entry's type, mode, owner, size, ns mtime, rdev, link target, content hash,
# xattrs (incl. ACLs and capabilities), sparseness and hardlink group, from Python's os.lstat and
# hashlib; independent of mirage's own code.
listing() {
  python3 "$MIRAGE_SOURCE/tests/e2e/listing.py" "$@"
}

# expect_same_tree A B [DIR...]: listings equal (leaving out the contents of each DIR),
# and getfacl agrees too.
expect_same_tree() {
  local a=$1 b=$2; shift 2
  listing "$a" "$@" >"$TEST_TMP/list.a"
  listing "$b" "$@" >"$TEST_TMP/list.b"
  if ! diff -u "$TEST_TMP/list.a" "$TEST_TMP/list.b" >"$TEST_TMP/list.diff"; then
    head -40 "$TEST_TMP/list.diff" >&2
    fail "trees differ: $a $b"
  fi
  if command -v getfacl >/dev/null && [ $# -eq 0 ]; then
    (cd "$a" && getfacl -R -p -n . 2>/dev/null) >"$TEST_TMP/acl.a" || true
    (cd "$b" && getfacl -R -p -n . 2>/dev/null) >"$TEST_TMP/acl.b" || true
    diff -u "$TEST_TMP/acl.a" "$TEST_TMP/acl.b" >&2 || fail "ACLs differ: $a $b"
  fi
}

# stream_stage STATUS_FILE: the stage a streaming restore's status file says (empty when none).
stream_stage() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("stage",""))' "$1" 2>/dev/null || true; }
# wait_stream_filling STATUS_FILE PID ERR_FILE: waits (60 s at most) until the streaming
# restore PID is filling its placeholders; fails with ERR_FILE's text when it ends first.
wait_stream_filling() {
  for _ in $(seq 1 600); do
    [ "$(stream_stage "$1")" = filling ] && return 0
    kill -0 "$2" 2>/dev/null || fail "the restore ended before its fill: $(cat "$3")"
    sleep 0.1
  done
  fail "no fill within 60 s: $(cat "$3")"
}
# is_placeholder FILE: true when FILE carries a streaming restore's placeholder mark.
is_placeholder() { python3 -c 'import os,sys; os.getxattr(sys.argv[1], "user.mirage.placeholder", follow_symlinks=False)' "$1" 2>/dev/null; }

# centralize_accepted ROOT DEVICE: registers (pending, exit 5), accepts, uploads.
centralize_accepted() {
  expect_exit 5 mirage-centralize --root "$1" --device-id "$2" --output json
  expect_contains "$OUT" '"state":"pending"'
  mirage-centralize accept "$2" --output json >/dev/null
  mirage-centralize --root "$1" --device-id "$2" --output json
}

# make_every_kind DIR: a tree holding every kind of entry rsync -aHAXS keeps.
make_every_kind() {
  local d=$1
  mkdir -p "$d/dir/sub" "$d/empty dir" "$d/sticky"
  printf 'hello\n' >"$d/dir/hello.txt"
  : >"$d/empty"
  head -c 3000000 /dev/urandom >"$d/dir/random.bin"
  head -c 2000000 < <(yes 'compressible line of text') >"$d/dir/text.txt"
  truncate -s 20M "$d/sparse"; printf 'middle' | dd of="$d/sparse" bs=1 seek=10485760 conv=notrunc status=none
  ln -s hello.txt "$d/dir/rel-link"
  ln -s /etc/passwd "$d/abs-link"
  ln -s does/not/exist "$d/dangling"
  ln "$d/dir/hello.txt" "$d/dir/sub/hard1"
  ln "$d/dir/hello.txt" "$d/hard2"
  mkfifo "$d/fifo"
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$d/socket"
  if [ "$(id -u)" = 0 ]; then
    mknod "$d/chardev" c 1 3
    mknod "$d/blockdev" b 7 200
    chown 12345:23456 "$d/dir/hello.txt"
    chown -h 4242:4343 "$d/dir/rel-link"
  fi
  printf 'x' >"$d/setuid"; chmod 4755 "$d/setuid"
  printf 'x' >"$d/setgid"; chmod 2711 "$d/setgid"
  chmod 1777 "$d/sticky"
  chmod 2775 "$d/dir/sub"
  printf 'space' >"$d/name with spaces"
  printf 'newline' >"$d/$(printf 'new\nline')"
  printf 'latin1' >"$d/$(printf 'caf\xe9')"
  if command -v setfattr >/dev/null; then
    setfattr -n user.comment -v "a comment" "$d/dir/text.txt"
    setfattr -n user.bin -v 0x00ff10 "$d/empty"
    setfattr -n trusted.secret -v value "$d/dir/random.bin" 2>/dev/null || true
  fi
  if command -v setcap >/dev/null && [ "$(id -u)" = 0 ]; then
    printf 'cap' >"$d/capbin"; chmod 755 "$d/capbin"; setcap cap_net_raw+ep "$d/capbin"
  fi
  if command -v setfacl >/dev/null; then
    setfacl -m u:1234:rwx,g:2345:r-x "$d/dir/hello.txt"
    setfacl -d -m u:1234:rwx "$d/dir/sub"
  fi
  touch -h -d '2001-02-03 04:05:06.123456789' "$d/dir/rel-link"
  touch -d '1999-12-31 23:59:59.987654321' "$d/dir/text.txt" "$d/empty dir"
  touch -d '2020-01-01 00:00:00.000000001' "$d/dir"
}

# stop_server: SIGTERM to $SERVER_PID, waits up to 10 s, then SIGKILL (a server that
# ignores SIGTERM must not hang the test run) and says so on stderr.
stop_server() {
  [ -n "${SERVER_PID:-}" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server ($SERVER_PID) still ran 10 s after SIGTERM: killed; its log ends:" >&2
    tail -20 "$TEST_TMP/server.log" >&2 2>/dev/null || true
    if command -v gdb >/dev/null; then  # where it hangs, for the report
      timeout 30 gdb -p "$SERVER_PID" -batch -ex "thread apply all bt 12" 2>/dev/null | grep -E "^Thread|^#" | head -120 >&2 || true
    fi
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
}

# start_http_server DATA [SERVERD ARGS...]: inits DATA, serves it on a free loopback
# port (https when the args hold --tls-cert); sets SERVER_URL, ADMIN_TOKEN and
# SERVER_PID (stopped on exit). SERVER_LAUNCH, if set, is a command that execs the rest.
# start_https_fleet DIR: a server over HTTPS with a CA made for it ($pki: ca.pem, ...),
# MIRAGE_SERVER and MIRAGE_CA_FILE exported (no token: an endpoint speaks for itself),
# and admin CMD... running CMD with the admin token.
start_https_fleet() {
  pki=$TEST_TMP/pki
  make_pki "$pki"
  start_http_server "$1" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
  export MIRAGE_SERVER="$SERVER_URL" MIRAGE_CA_FILE="$pki/ca.pem"
}
admin() { MIRAGE_TOKEN=$ADMIN_TOKEN "$@"; }

start_http_server() {
  local data=$1; shift
  local scheme=http
  case " $* " in *" --tls-cert "*) scheme=https ;; esac
  ADMIN_TOKEN=$(mirage-serverd init --data "$data" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')
  local port
  trap 'stop_server; cleanup' EXIT
  for _ in 1 2 3 4 5; do
    port=$(( 20000 + RANDOM % 20000 ))
    ${SERVER_LAUNCH:-} mirage-serverd --data "$data" --listen "127.0.0.1:$port" "$@" 2>"$TEST_TMP/server.log" &
    SERVER_PID=$!
    # Up to 60 s on a loaded machine; a server that exits early (the port was taken) is
    # tried again on another port. One still starting is never left behind: it would
    # hold ctest's output pipe, and ctest waits for that for ever.
    for _ in $(seq 1 600); do
      grep -q serving "$TEST_TMP/server.log" 2>/dev/null && break
      kill -0 $SERVER_PID 2>/dev/null || break
      sleep 0.1
    done
    if grep -q serving "$TEST_TMP/server.log"; then
      SERVER_URL="$scheme://127.0.0.1:$port"
      return 0
    fi
    kill -0 $SERVER_PID 2>/dev/null && { stop_server; fail "server did not start within 60 s: $(cat "$TEST_TMP/server.log")"; }
    wait $SERVER_PID 2>/dev/null || true
  done
  SERVER_PID=
  fail "server did not start: $(cat "$TEST_TMP/server.log")"
}

# A bookworm minbase root in $1, made by debootstrap once and then unpacked from a
# cached tarball (MIRAGE_TEST_CACHE, default /var/cache/mirage-tests). Skips (77) when
# the mirror cannot be reached.
make_bookworm() { make_debian bookworm "$1"; }
# A trixie minbase root in $1, cached the same way (the OS migration's new release).
make_trixie() { make_debian trixie "$1"; }
# make_debian SUITE DEST: a minbase root of SUITE, cached as SUITE-minbase.tar.
make_debian() {
  local suite=$1 dest=$2 cache=${MIRAGE_TEST_CACHE:-/var/cache/mirage-tests}
  local tarball="$cache/$suite-minbase.tar"
  if [ ! -s "$tarball" ]; then
    local mirror=${MIRAGE_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$cache"
    if ! debootstrap --variant=minbase "$suite" "$TEST_TMP/.bootstrap" "$mirror" >"$TEST_TMP/debootstrap.log" 2>&1; then
      tail -5 "$TEST_TMP/debootstrap.log" >&2
      skip "debootstrap could not reach $mirror"
    fi
    tar --xattrs --acls --numeric-owner -C "$TEST_TMP/.bootstrap" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$TEST_TMP/.bootstrap"
  fi
  mkdir -p "$dest"
  tar --xattrs --xattrs-include='*' --acls --numeric-owner -C "$dest" -xpf "$tarball"
}

# Runs apt-get install in a chroot with services kept from starting; the helper files
# are removed again so they do not show up in a capture.
chroot_install() {
  local r=$1; shift
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"; chmod 755 "$r/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  local rc=0
  DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get -o Acquire::Retries=3 install -y --no-install-recommends "$@" \
    >"$TEST_TMP/apt.log" 2>&1 || rc=$?
  rm -f "$r/usr/sbin/policy-rc.d"
  if [ $rc != 0 ]; then
    if grep -q "Could not resolve\|Failed to fetch\|Unable to connect\|Temporary failure" "$TEST_TMP/apt.log"; then
      tail -5 "$TEST_TMP/apt.log" >&2; skip "apt-get could not reach the mirror"
    fi
    tail -20 "$TEST_TMP/apt.log" >&2; fail "apt-get install $* failed in $r"
  fi
}

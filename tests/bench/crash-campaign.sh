#!/usr/bin/env bash
# Crash campaign: kill -9 at random moments, then check that nothing was lost or torn.
#   tests/bench/crash-campaign.sh [BUILD_DIR]
# Each trial picks one of four victims and a random moment (up to 1.2 times what an
# undisturbed run of the same step took when the campaign started):
#   centralize  a sync of device dev-c after some of its files changed (local: transport);
#               the client (its store in process), its mirage-serverd --stdio (run as
#               MIRAGE_SERVERD for such trials), or both are killed
#   apply       a sync of device dev-a carrying out a layer order (base b@1 <-> b@2); the
#               client, its server or both are killed, at a random moment or, one time in
#               four, at a random staging or commit step of the apply (MIRAGE_TEST_CRASH_AT_*)
#   gc          `mirage gc --grace 0s --repack-below 0.9` after a sync made garbage; the
#               server process doing the collection (and sometimes the client) is killed
#   server      mirage-serverd over HTTP on 127.0.0.1, killed while dev-c syncs through it
#               (and, one time in two, while a GC runs in it); then restarted next time
# After each trial:
#   - `mirage check --read-data` is clean;
#   - the latest snapshot of each device touched restores equal (tests/e2e/listing.py)
#     to a tree it was taken of: the one before the trial or one the trial made, and to
#     the new one when the step was not killed;
#   - apply: right after the kill every file holds the before- or the after-image's
#     content (or is a staging temporary); once the next sync's recovery has run (the
#     sync is stopped before its commit, MIRAGE_TEST_CRASH_BEFORE_COMMIT) the endpoint is
#     the before-image or the after-image exactly, never between (directory times
#     included: a rollback that leaves only those changed is a failure too); a
#     full sync then finishes the order: the after-image;
#   - a client whose server was killed exits 75 (unavailable), or 0 if it had finished;
#     no process outlives its trial by more than 30 s.
# A failure is printed with what was wrong; the world (data directory, trees) is kept
# under CAMPAIGN_DIR/failures/ (the first five) and then built afresh.
# Environment: TRIALS (1000), MAX_SECONDS (3600: no trial starts after that), SEED
# (random; printed: with it the same files and choices come again, the kill moments
# are timing), KINDS (centralize,apply,gc,server), CAMPAIGN_FILES (files in dev-c's tree,
# 60), CAMPAIGN_DIR (/var/tmp/mirage-crash-campaign), CAMPAIGN_KEEP=1 keeps it all,
# CAMPAIGN_VERBOSE=1 prints a line per trial.
# Prints "trials N failures F" and exits 1 on any failure. Bounded: every command runs
# under `timeout`, every wait loop has a count.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export PATH="$build:$PATH"
TRIALS=${TRIALS:-1000}
MAX_SECONDS=${MAX_SECONDS:-3600}
SEED=${SEED:-$(( (RANDOM << 15) | RANDOM ))}
KINDS=${KINDS:-centralize,apply,gc,server}
FILES=${CAMPAIGN_FILES:-60}
C=${CAMPAIGN_DIR:-/var/tmp/mirage-crash-campaign}
helper="$here/crash-campaign.py"
lister="$here/../e2e/listing.py"
RANDOM=$SEED
IFS=, read -r -a kinds <<<"$KINDS"
for k in "${kinds[@]}"; do
  case $k in centralize|apply|gc|server) ;; *) echo "crash-campaign: unknown kind '$k' in KINDS" >&2; exit 2 ;; esac
done
for t in python3 timeout pgrep setsid; do command -v $t >/dev/null || { echo "crash-campaign: needs $t" >&2; exit 2; }; done
unset MIRAGE_SERVER MIRAGE_TOKEN MIRAGE_TEST_CRASH_AT_STEP MIRAGE_TEST_CRASH_AT_STAGE MIRAGE_TEST_CRASH_BEFORE_COMMIT
rm -rf "$C"; mkdir -p "$C/failures"
W=$C/world
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null
  [ -n "${CAMPAIGN_KEEP:-}" ] || rm -rf "$W"
  if [ -z "${CAMPAIGN_KEEP:-}" ] && [ -z "$(ls -A "$C/failures" 2>/dev/null)" ]; then rm -rf "$C"; fi
}
trap cleanup EXIT

T=(timeout -k 5 300)  # no step of a trial may hang the campaign
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# random_delay SECONDS: a random moment in [0, 1.2 * SECONDS].
random_delay() { awk -v t="$1" -v r=$RANDOM 'BEGIN { printf "%.3f", t * 1.2 * r / 32767 }'; }
listing() { python3 -S "$lister" "$1"; }

alive() {  # alive PID: running and not a zombie
  local s
  s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$s" ] && [ "$s" != Z ]
}
# ---- the world: a data directory, two devices, two layer versions -------------------
problem=""  # what went wrong in this trial ("" when nothing)
note() { problem+="${problem:+; }$*"; }

setup_world() {
  rm -rf "$W"; mkdir -p "$W"/{lists,logs}
  export MIRAGE_HOME="$W/home"
  ADMIN_TOKEN=$(mirage-serverd init --data "$W/home" --output json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])') || return 1
  echo '{"retention": {"last": 2, "hourly": 0, "daily": 0, "weekly": 0, "monthly": 0}}' >"$W/short.json"
  mirage policy set short --file "$W/short.json" >/dev/null || return 1
  # dev-c: a tree of small files and one large one, changed before every sync.
  python3 -S "$helper" make "$W/src" "$SEED" "$FILES"
  mirage-centralize --root "$W/src" --device-id dev-c --output json >/dev/null 2>&1  # registers: pending (5)
  mirage-centralize accept dev-c >/dev/null || return 1
  mirage policy assign short --device dev-c >/dev/null || return 1
  "${T[@]}" mirage-centralize --root "$W/src" --device-id dev-c --output json >/dev/null || return 1
  python3 -S "$helper" mutate "$W/src" "$SEED"
  local t0; t0=$(now)
  "${T[@]}" mirage-centralize --root "$W/src" --device-id dev-c --output json >/dev/null || return 1
  T_C=$(elapsed "$t0")
  listing "$W/src" >"$W/lists/c.latest"
  # dev-a: an endpoint of base b, moved between b@1 and b@2.
  python3 -S "$helper" layer "$W/v1" "$SEED" 1
  python3 -S "$helper" layer "$W/v2" "$SEED" 2
  mirage-capture base --root "$W/v1" --name b --output json >/dev/null || return 1
  mirage-capture base --root "$W/v2" --name b --output json >/dev/null || return 1
  cp -a "$W/v1" "$W/ep"
  mkdir -p "$W/ep/home/user"
  python3 -c 'import os,random,sys; open(sys.argv[1],"wb").write(random.Random(int(sys.argv[2])).randbytes(80000))' \
    "$W/ep/home/user/thesis.pdf" "$SEED"
  mirage-centralize --root "$W/ep" --device-id dev-a --output json >/dev/null 2>&1
  mirage-centralize accept dev-a >/dev/null || return 1
  # The images once the apply has set everything the layer owns (the root's mtime too):
  # v1, v2, v1 again; the last two listings are the images every later trial compares with.
  local v
  for v in 1 2 1; do
    mirage-assign --device dev-a --base "b@$v" --output json >/dev/null || return 1
    t0=$(now)
    "${T[@]}" mirage-centralize --root "$W/ep" --device-id dev-a --output json >/dev/null || return 1
    T_A=$(elapsed "$t0")
    listing "$W/ep" >"$W/lists/image$v"
  done
  cp "$W/lists/image1" "$W/lists/a.latest"
  A_AT=1
  t0=$(now)
  "${T[@]}" mirage gc --grace 0s --repack-below 0.9 --output json >/dev/null || return 1
  T_G=$(elapsed "$t0")
  T_S=$T_C
  PORT=""
}

# ---- after a trial ------------------------------------------------------------------
# verify_check: the store is clean.
verify_check() {
  local out
  out=$("${T[@]}" mirage check --read-data --output json 2>&1)
  local rc=$?
  if [ $rc != 0 ] || ! grep -q '"ok":true' <<<"$out"; then
    note "mirage check --read-data exit $rc: $(head -c 600 <<<"$out")"
    return 1
  fi
}
# verify_latest DEVICE CANDIDATE...: the latest snapshot restores equal to one of the
# listings; that one becomes the device's latest (lists/<c|a>.latest).
verify_latest() {
  local dev=$1; shift
  local to="$W/restore-$dev" got="$W/lists/restored"
  rm -rf "$to"
  if ! "${T[@]}" mirage-restore --device "$dev" --path / --to "$to" --output json >"$W/logs/restore" 2>&1; then
    note "restore of $dev's latest snapshot failed: $(tail -c 400 "$W/logs/restore")"
    return 1
  fi
  listing "$to" >"$got"
  local cand
  for cand in "$@"; do
    if cmp -s "$got" "$cand"; then
      [ "$cand" = "$W/lists/${dev#dev-}.latest" ] || cp "$cand" "$W/lists/${dev#dev-}.latest"
      rm -rf "$to"
      return 0
    fi
  done
  note "latest snapshot of $dev restores to a tree it was not taken of; against $(basename "$1"): $(diff "$1" "$got" | head -6 | tr '\n' ' ')"
  return 1
}

# run_killed DELAY VICTIM CMD...: runs CMD in the background in a process group of its
# own, kill -9s VICTIM (client; server: the mirage-serverd --stdio processes it started;
# both: the whole group) after DELAY seconds; sets RC, LANDED (1 when a kill hit a
# running process) and VICTIM (client when it had no server yet). Then waits (bounded)
# until no process of the group is left: an orphaned server finishing its request must
# not race the checks.
run_killed() { run_killed_quietly "$@" 2>/dev/null; }  # no "Killed" notices from bash
run_killed_quietly() {
  local delay=$1; VICTIM=$2; shift 2
  # The commands serve local: in their own process; a server to kill apart from its
  # client is one they run as MIRAGE_SERVERD (server, both), the client alone the other.
  local serverd=
  case $VICTIM in server | both) serverd=$(command -v mirage-serverd) ;; esac
  MIRAGE_SERVERD=$serverd setsid "$@" >"$W/logs/run.out" 2>"$W/logs/run.err" &
  local pid=$! i
  sleep "$delay"
  LANDED=0
  if [ "$VICTIM" != none ] && alive $pid; then
    # Only its mirage-serverd children: under LeakSanitizer a client that is exiting has
    # another child, the tracer task of its leak check, and killing that one leaves the
    # client waiting for it for ever (the "300 s hang" of earlier ASan campaigns).
    local kids; kids=$(pgrep -P $pid -x mirage-serverd)
    [ -z "$kids" ] && VICTIM=client
    case $VICTIM in
      client) kill -9 $pid ;;
      server) kill -9 $kids && LANDED=1 ;;
      both) kill -9 -- -$pid ;;
    esac
  fi
  for ((i = 0; i < 3000; i++)); do alive $pid || break; sleep 0.1; done
  if alive $pid; then
    note "still running 300 s after the kill: $* ($(tail -c 300 "$W/logs/run.err"))"
    kill -9 $pid
  fi
  wait $pid; RC=$?
  [ "$VICTIM" != server ] && [ $RC = 137 ] && LANDED=1  # else it had ended before the kill
  local left=""
  for ((i = 0; i < 300; i++)); do
    left=$(group_alive $pid)
    [ -z "$left" ] && break
    sleep 0.1
  done
  if [ -n "$left" ]; then
    note "processes still running 30 s after the kill: $(ps -o pid=,args= -p "$(tr '\n' , <<<"$left")" | tr '\n' ' ')"
    kill -9 -- -$pid
  fi
}
# group_alive PGID: the live (not zombie) processes of a process group.
group_alive() {
  local p
  for p in $(pgrep -g "$1"); do alive "$p" && echo "$p"; done
}

# run_to_end CMD...: as run_killed, killing nothing (CMD may _exit and leave its server).
run_to_end() { run_killed 0 none "$@"; }

pick_victim() { local v=(client server both); echo "${v[RANDOM % 3]}"; }

# ---- trials ---------------------------------------------------------------------------
trial_centralize() {
  python3 -S "$helper" mutate "$W/src" $((SEED + trial))
  listing "$W/src" >"$W/lists/c.new"
  local delay victim; delay=$(random_delay "$T_C"); victim=$(pick_victim)
  run_killed "$delay" "$victim" mirage-centralize --root "$W/src" --device-id dev-c --output json
  what="kill -9 $VICTIM after ${delay}s"
  [ "$VICTIM" = server ] && [ $LANDED = 1 ] && expect_unavailable
  [ $LANDED = 0 ] && [ $RC != 0 ] && note "an undisturbed sync exited $RC: $(tail -c 300 "$W/logs/run.err")"
  verify_check
  if [ $LANDED = 0 ] && [ $RC = 0 ]; then verify_latest dev-c "$W/lists/c.new"
  else verify_latest dev-c "$W/lists/c.latest" "$W/lists/c.new"; fi
}

# A client whose server died says so with exit 75 (or it had just finished: 0).
expect_unavailable() {
  case $RC in
    0|75) ;;
    *) note "the client exited $RC when its server was killed (75 expected): $(tail -c 300 "$W/logs/run.err")" ;;
  esac
}

trial_apply() {
  local to=$((3 - A_AT)) from=$A_AT
  local before="$W/lists/image$from" after="$W/lists/image$to"
  if ! mirage-assign --device dev-a --base "b@$to" --output json >"$W/logs/assign" 2>&1; then
    note "assign failed: $(tail -c 300 "$W/logs/assign")"; return
  fi
  local victim delay env=()
  victim=$(pick_victim)
  if [ $((RANDOM % 4)) = 0 ]; then
    local at=$((RANDOM % 40)) var=MIRAGE_TEST_CRASH_AT_STAGE
    [ $((RANDOM % 2)) = 0 ] && var=MIRAGE_TEST_CRASH_AT_STEP
    env=(env "$var=$at"); delay=$(random_delay "$T_A"); victim=none
    what="b@$from -> b@$to, dies at $var=$at"
    run_to_end "${env[@]}" mirage-centralize --root "$W/ep" --device-id dev-a --output json
    [ $RC = 99 ] && LANDED=1
    [ $RC = 0 ] || [ $RC = 99 ] || note "a sync with $var=$at exited $RC: $(tail -c 300 "$W/logs/run.err")"
  else
    delay=$(random_delay "$T_A")
    run_killed "$delay" "$victim" mirage-centralize --root "$W/ep" --device-id dev-a --output json
    what="b@$from -> b@$to, kill -9 $VICTIM after ${delay}s"
    [ "$VICTIM" = server ] && [ $LANDED = 1 ] && expect_unavailable
    [ $LANDED = 0 ] && [ $RC != 0 ] && note "an undisturbed apply exited $RC: $(tail -c 300 "$W/logs/run.err")"
  fi
  # No torn file, right after the kill.
  local torn; torn=$(python3 -S "$helper" torn "$W/ep" "$before" "$after")
  [ -z "$torn" ] || note "after the kill: $(tr '\n' ' ' <<<"$torn")"
  verify_check
  if [ $LANDED = 0 ] && [ $RC = 0 ]; then verify_latest dev-a "$after"
  else verify_latest dev-a "$W/lists/a.latest" "$before" "$after"; fi
  # The next sync's recovery (stopped before it commits anything): before or after, never between.
  local rc=$RC
  run_to_end env MIRAGE_TEST_CRASH_BEFORE_COMMIT=1 mirage-centralize --root "$W/ep" --device-id dev-a --output json
  [ $RC = 99 ] || note "the recovering sync exited $RC (99 expected): $(tail -c 300 "$W/logs/run.err")"
  RC=$rc
  local rec="$W/lists/ep.recovered"
  listing "$W/ep" >"$rec"
  if cmp -s "$rec" "$before" || cmp -s "$rec" "$after"; then
    :
  elif python3 -S "$helper" dir-mtimes-only "$before" "$rec"; then
    # A rollback sets back the times of the directories staging wrote in: this is a failure.
    dir_mtime_rollbacks=$((dir_mtime_rollbacks + 1))
    note "rolled back, but directories staging wrote in kept their new mtime: $(diff "$before" "$rec" | head -4 | tr '\n' ' ')"
  else
    note "after recovery the endpoint is neither the before- nor the after-image: $(diff "$before" "$rec" | head -6 | tr '\n' ' ') / vs after: $(diff "$after" "$rec" | head -6 | tr '\n' ' ')"
  fi
  # A full sync finishes the order.
  if ! "${T[@]}" mirage-centralize --root "$W/ep" --device-id dev-a --output json >"$W/logs/finish.out" 2>"$W/logs/finish.err"; then
    note "the sync after the crash failed: $(tail -c 300 "$W/logs/finish.err")"
  fi
  listing "$W/ep" >"$W/lists/ep"
  cmp -s "$W/lists/ep" "$after" || note "the sync after the crash did not finish the order: $(diff "$after" "$W/lists/ep" | head -6 | tr '\n' ' ')"
  verify_latest dev-a "$after"
  A_AT=$to
}

trial_gc() {
  python3 -S "$helper" mutate "$W/src" $((SEED + trial))
  if ! "${T[@]}" mirage-centralize --root "$W/src" --device-id dev-c --output json >"$W/logs/sync" 2>&1; then
    note "the sync before gc failed: $(tail -c 300 "$W/logs/sync")"; return
  fi
  listing "$W/src" >"$W/lists/c.latest"
  local delay victim=server; delay=$(random_delay "$T_G")
  [ $((RANDOM % 4)) = 0 ] && victim=both
  run_killed "$delay" "$victim" mirage gc --grace 0s --repack-below 0.9 --output json
  what="kill -9 $VICTIM after ${delay}s"
  [ $LANDED = 1 ] && [ "$VICTIM" = server ] && expect_unavailable
  [ $LANDED = 0 ] && [ $RC != 0 ] && note "an undisturbed gc exited $RC: $(tail -c 300 "$W/logs/run.err")"
  verify_check
  verify_latest dev-c "$W/lists/c.latest"
  verify_latest dev-a "$W/lists/a.latest"
}

start_server() {
  local i j
  for ((i = 0; i < 5; i++)); do
    PORT=$((20000 + RANDOM % 20000))
    : >"$W/logs/server.log"
    mirage-serverd --data "$W/home" --listen "127.0.0.1:$PORT" --gc-interval 0 2>"$W/logs/server.log" &
    server_pid=$!
    for ((j = 0; j < 100; j++)); do
      grep -q serving "$W/logs/server.log" 2>/dev/null && return 0
      alive $server_pid || break
      sleep 0.1
    done
    kill -9 $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; server_pid=""
  done
  note "the server did not start: $(tail -c 300 "$W/logs/server.log")"
  return 1
}

trial_server() {
  python3 -S "$helper" mutate "$W/src" $((SEED + trial))
  listing "$W/src" >"$W/lists/c.new"
  start_server || return
  local url="http://127.0.0.1:$PORT" gc_pid=""
  local delay; delay=$(random_delay "$T_S")
  what="kill -9 of the HTTP server after ${delay}s"
  "${T[@]}" mirage-centralize --server "$url" --root "$W/src" --device-id dev-c --output json \
    >"$W/logs/run.out" 2>"$W/logs/run.err" &
  local pid=$!
  if [ $((RANDOM % 2)) = 0 ]; then
    what+=", gc running"
    "${T[@]}" mirage gc --server "$url" --token "$ADMIN_TOKEN" --grace 0s --repack-below 0.9 --output json \
      >"$W/logs/gc.out" 2>"$W/logs/gc.err" &
    gc_pid=$!
  fi
  sleep "$delay"
  LANDED=0; alive $pid && LANDED=1
  kill -9 $server_pid; { wait $server_pid; } 2>/dev/null; server_pid=""
  { wait $pid; } 2>/dev/null; RC=$?
  [ $LANDED = 1 ] && expect_unavailable
  [ $LANDED = 0 ] && [ $RC != 0 ] && note "a sync over HTTP that finished before the kill exited $RC: $(tail -c 300 "$W/logs/run.err")"
  if [ -n "$gc_pid" ]; then
    { wait $gc_pid; } 2>/dev/null; local grc=$?
    case $grc in 0|75) ;; *) note "gc over HTTP exited $grc when the server was killed: $(tail -c 300 "$W/logs/gc.err")" ;; esac
  fi
  verify_check
  if [ $LANDED = 0 ] && [ $RC = 0 ]; then verify_latest dev-c "$W/lists/c.new"
  else verify_latest dev-c "$W/lists/c.latest" "$W/lists/c.new"; fi
}

# ---- the campaign -----------------------------------------------------------------------
echo "crash campaign: TRIALS=$TRIALS MAX_SECONDS=$MAX_SECONDS SEED=$SEED KINDS=$KINDS CAMPAIGN_FILES=$FILES in $C" >&2
if ! setup_world >"$C/setup.log" 2>&1; then
  echo "crash-campaign: setting up the world failed:" >&2; tail -20 "$C/setup.log" >&2; exit 1
fi
echo "undisturbed: centralize ${T_C}s, apply ${T_A}s, gc ${T_G}s" >&2
start=$(now)
trials=0 failures=0 landed=0 kept=0 dir_mtime_rollbacks=0
declare -A per_kind per_fail
failure_lines=()
for ((trial = 1; trial <= TRIALS; trial++)); do
  if awk -v e="$(elapsed "$start")" -v m="$MAX_SECONDS" 'BEGIN { exit !(e >= m) }'; then
    echo "crash campaign: MAX_SECONDS=$MAX_SECONDS reached after $trials trials" >&2
    break
  fi
  kind=${kinds[RANDOM % ${#kinds[@]}]}
  problem="" what="" RC=0 LANDED=0
  "trial_$kind"
  trials=$((trials + 1)); landed=$((landed + LANDED))
  per_kind[$kind]=$(( ${per_kind[$kind]:-0} + 1 ))
  if [ -n "$problem" ]; then
    failures=$((failures + 1)); per_fail[$kind]=$(( ${per_fail[$kind]:-0} + 1 ))
    line="trial $trial ($kind: $what; exit $RC): $problem"
    if [ $kept -lt 5 ]; then
      kept=$((kept + 1)); cp -a "$W" "$C/failures/trial-$trial" 2>/dev/null
      line+=" [kept in $C/failures/trial-$trial]"
    fi
    failure_lines+=("$line")
    echo "FAIL $line" >&2
    setup_world >"$C/setup.log" 2>&1 || { echo "crash-campaign: rebuilding the world failed" >&2; tail -20 "$C/setup.log" >&2; break; }
  elif [ -n "${CAMPAIGN_VERBOSE:-}" ]; then
    echo "ok   trial $trial ($kind: $what; exit $RC; $([ $LANDED = 1 ] && echo killed || echo finished first))" >&2
  fi
done
summary=""
for k in "${kinds[@]}"; do summary+="${summary:+, }$k ${per_kind[$k]:-0}/${per_fail[$k]:-0}"; done
echo "trials $trials failures $failures (kills that landed $landed; per kind trials/failures: $summary; $(elapsed "$start")s; SEED=$SEED)"
[ $dir_mtime_rollbacks = 0 ] ||
  echo "  of the failures, $dir_mtime_rollbacks rolled-back applies left only the mtime of directories they staged in changed"
for l in "${failure_lines[@]}"; do echo "  $l"; done
[ "$failures" = 0 ] && [ "$trials" -gt 0 ]

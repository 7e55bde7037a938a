#!/usr/bin/env bash
# libmirage never exits, reads test hooks from the environment or changes the process's
# working directory: the server and the endpoint agent run the same code for months, on
# many threads. Processes start only through util::spawn (its child may chroot, chdir
# to "/" and _exit(127) after a failed exec: that is the child). libcurl is included only
# by util/http_client.cpp. No executable links libcurl or libarchive: util::DynLib opens them
# for the commands that use them, so a cold start does not load their thirty-odd libraries.
source "$(dirname "$0")/lib.sh"
cd "$MIRAGE_SOURCE"
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(_exit|exit|abort)\(' libmirage --include='*.cpp' --include='*.hpp' | grep -v '^libmirage/util/spawn.cpp:.*_exit(127)' || true)
[ -z "$hits" ] || fail "libmirage exits: $hits"
hits=$(grep -rn 'MIRAGE_TEST_CRASH' libmirage || true)
[ -z "$hits" ] || fail "libmirage reads crash hooks from the environment (cmd/ installs them): $hits"
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(f?chdir)\(' libmirage --include='*.cpp' --include='*.hpp' | grep -v '^libmirage/util/spawn\.[ch]pp:' || true)
[ -z "$hits" ] || fail "libmirage changes the working directory (process-wide): $hits"
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(fork|vfork|posix_spawnp?|popen|system|exec[lv]p?e?)\(' libmirage --include='*.cpp' --include='*.hpp' | grep -v '^libmirage/util/spawn\.[ch]pp:' || true)
[ -z "$hits" ] || fail "libmirage starts a process outside util::spawn: $hits"
hits=$(grep -rn --include='*.[ch]pp' '#include <curl/' libmirage cmd tests | grep -v '^libmirage/util/http_client\.cpp:' || true)
[ -z "$hits" ] || fail "libcurl is wrapped once, in util/http_client.cpp: $hits"
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(signal|sigaction)\(|#include <CLI/' libmirage --include='*.cpp' --include='*.hpp' || true)
[ -z "$hits" ] || fail "libmirage installs signal handlers or uses CLI11 (cmd/ does): $hits"
for tool in "$MIRAGE_BIN"/mirage "$MIRAGE_BIN"/mirage-*; do
  [ -x "$tool" ] && [ -f "$tool" ] || continue
  linked=$(readelf -d "$tool" | grep -E 'NEEDED.*(libcurl|libarchive)' || true)
  [ -z "$linked" ] || fail "$(basename "$tool") loads at start what it should open on use: $linked"
done
echo ok

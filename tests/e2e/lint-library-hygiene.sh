#!/usr/bin/env bash
# libmirage never exits, reads test hooks from the environment or changes the process's
# working directory: the server and the endpoint agent run the same code for months, on
# many threads. (A forked child may _exit(127) after a failed exec: that is the child,
# and a post-layer hook's child chroots and chdirs to "/" before its exec.)
source "$(dirname "$0")/lib.sh"
cd "$MIRAGE_SOURCE"
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(_exit|exit|abort)\(' libmirage --include='*.cpp' --include='*.hpp' | grep -v '_exit(127)' || true)
[ -z "$hits" ] || fail "libmirage exits: $hits"
hits=$(grep -rn 'MIRAGE_TEST_CRASH' libmirage || true)
[ -z "$hits" ] || fail "libmirage reads crash hooks from the environment (cmd/ installs them): $hits"
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(f?chdir)\(' libmirage --include='*.cpp' --include='*.hpp' | grep -v 'libmirage/util/spawn.cpp' | grep -v 'chroot(' || true)
[ -z "$hits" ] || fail "libmirage changes the working directory (process-wide): $hits"
echo ok

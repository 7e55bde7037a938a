# The set-up the benchmarks against restic share: sourced by centralize-vs-restic.sh and
# browse-vs-restic.sh, so that both measure the same kind of data the same way.
set -euo pipefail

# bench_init DEFAULT_DIR [BUILD_DIR]: PATH gets the build's binaries; restic must be
# installed; $B ($BENCH_DIR, else DEFAULT_DIR) is made anew with $data in it; both
# tools' repositories go under $B ($MIRAGE_HOME, $RESTIC_REPOSITORY, the endpoint's
# $state); $budget is $BENCH_BYTES (2 GB). The caller sets its own EXIT trap.
bench_init() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  build=$(cd "${2:-$here/../../build}" && pwd)
  export PATH="$build:$PATH"
  command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 1; }
  budget=${BENCH_BYTES:-2000000000}
  B=${BENCH_DIR:-$1}
  rm -rf "$B"; mkdir -p "$B"
  data="$B/data"; mkdir -p "$data"
  export MIRAGE_HOME="$B/mirage" RESTIC_REPOSITORY="$B/restic" RESTIC_PASSWORD=bench
  export RESTIC_CACHE_DIR="$B/restic-cache"
  state="$B/endpoint-state"  # the endpoint's files cache, kept out of the measured store
  unset MIRAGE_SERVER
}

# prepare_data: ~$budget bytes of real files into $data, whole files, /usr/share first
# then /usr/lib, until the budget is reached.
prepare_data() {
  echo "preparing ~$((budget / 1000000)) MB of real files in $data" >&2
  (cd / && find usr/share usr/lib \( -type f -o -type l \) -printf '%s %p\n' 2>/dev/null |
    awk -v budget="$budget" '{ total += $1; if (total > budget) exit; sub(/^[0-9]+ /, ""); print }' |
    cpio -pdm --quiet "$data" 2>/dev/null) || true
}

# count_data: $total (bytes) and $nfiles of $data, said on stderr.
count_data() {
  total=$(du -sb "$data" | cut -f1)
  nfiles=$(find "$data" -type f | wc -l)
  echo "data: $total bytes in $nfiles files" >&2
}

# unpack_bookworm ROOT: the debootstrap bookworm root the tests cache (made once by
# tests/e2e/lib.sh's make_bookworm with the binaries of $build) unpacked into ROOT.
unpack_bookworm() { unpack_debian bookworm "$1"; }
# unpack_debian SUITE ROOT: the same for another suite (trixie: the OS migration's new release).
unpack_debian() {
  local suite=$1 root=$2 here tarball
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  tarball=${MIRAGE_TEST_CACHE:-/var/cache/mirage-tests}/$suite-minbase.tar
  if [ ! -s "$tarball" ]; then
    echo "making the $suite root once (tests/e2e/lib.sh make_debian)" >&2
    ( export MIRAGE_BIN=$build; source "$here/../e2e/lib.sh"; make_debian "$suite" "$root.tmp" ) >/dev/null
    rm -rf "$root.tmp"
  fi
  mkdir -p "$root"
  tar --xattrs --xattrs-include='*' --acls --numeric-owner -C "$root" -xpf "$tarball"
}
# drop_caches: the page cache emptied (root only), so the next reads come from the disk.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "note: cannot drop caches (not root)" >&2; }
# ratio A B: A / B with two decimals, "-" when B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

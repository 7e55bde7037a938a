#!/usr/bin/env bash
# The crash campaign's short form (tests/bench/crash-campaign.sh says what it checks):
# 40 trials of kill -9 of a centralize, a layer apply, a GC and the HTTP server at
# random moments; after every one `mirage check --read-data` is clean, the latest
# snapshots restore to trees they were taken of, and the endpoint is before or after
# its order, never between. No trial starts after 150 s.
source "$(dirname "$0")/lib.sh"
need python3 timeout pgrep setsid
out=$(TRIALS=${TRIALS:-40} MAX_SECONDS=${MAX_SECONDS:-150} CAMPAIGN_FILES=${CAMPAIGN_FILES:-30} \
  CAMPAIGN_DIR="$TEST_TMP/campaign" bash "$MIRAGE_SOURCE/tests/bench/crash-campaign.sh" "$MIRAGE_BIN") ||
  fail "the crash campaign found failures: $out"
echo "$out"
expect_contains "$out" "failures 0"
echo ok

#include <doctest/doctest.h>

#include "libmirage/server/metrics.hpp"

using namespace mirage;

TEST_SUITE_BEGIN("server::Metrics");

TEST_CASE("last syncs fall in one disjoint age bucket each, never apart") {
  constexpr int64_t s = 1000000000, h = 3600 * s, d = 24 * h;
  const int64_t now = 1800000000 * s;
  std::vector<int64_t> syncs = {now,          now - h,          // within the hour (its edge included)
                                now - h - 1,  now - d,          // within the day
                                now - 3 * d,  now - 7 * d,      // within the week
                                now - 8 * d,  now - 30 * d,     // within 30 days
                                now - 31 * d, now - 400 * d,    // older
                                0,            0,           0};  // never
  auto b = server::sync_age_buckets(syncs, now);
  CHECK(b == std::array<int64_t, 6>{2, 2, 2, 2, 2, 3});
  CHECK(server::k_sync_age_labels[5] == std::string("never"));
  CHECK(server::sync_age_buckets({}, now) == std::array<int64_t, 6>{});
  // A sync stamped in the future (a skewed clock) is recent, not lost.
  CHECK(server::sync_age_buckets({now + h}, now)[0] == 1);
}

TEST_SUITE_END();

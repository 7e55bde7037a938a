#include <doctest/doctest.h>

#include <set>

#include "libmirage/policy/retention.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::policy;

namespace {

int64_t at(const char* when) { return *util::parse_time_lower(when); }

/// The indexes of the snapshots kept.
std::set<size_t> kept(const std::vector<SnapshotTime>& s, const Retention& r) {
  auto tiers = retention_tiers(s, r);
  std::set<size_t> out;
  for (size_t i = 0; i < tiers.size(); ++i)
    if (!tiers[i].empty()) out.insert(i);
  return out;
}

Retention only(uint32_t last, uint32_t hourly, uint32_t daily, uint32_t weekly, uint32_t monthly) {
  Retention r;
  r.last = last;
  r.hourly = hourly;
  r.daily = daily;
  r.weekly = weekly;
  r.monthly = monthly;
  return r;
}

}  // namespace

TEST_SUITE_BEGIN("policy::Retention");

TEST_CASE("hourly counts hours that hold snapshots, newest in each") {
  std::vector<SnapshotTime> s = {{at("2026-01-01T10:05")}, {at("2026-01-01T10:40")}, {at("2026-01-01T11:10")},
                                 {at("2026-01-02T09:00")}, {at("2026-01-03T09:00")}, {at("2026-01-03T09:30")}};
  // Newest first: 5 (01-03 09h), 4 same hour, 3 (01-02 09h), 2 (01-01 11h), 1 (01-01 10h), 0 same hour.
  CHECK(kept(s, only(0, 3, 0, 0, 0)) == std::set<size_t>{5, 3, 2});
  CHECK(kept(s, only(0, 10, 0, 0, 0)) == std::set<size_t>{5, 3, 2, 1});
  CHECK(kept(s, only(0, 0, 2, 0, 0)) == std::set<size_t>{5, 3});
  CHECK(kept(s, only(2, 0, 0, 0, 0)) == std::set<size_t>{5, 4});
}

TEST_CASE("weeks are ISO weeks and months calendar months, in UTC") {
  // 2026-01-04 is a Sunday (ISO week 1), 2026-01-05 a Monday (week 2).
  std::vector<SnapshotTime> s = {{at("2026-01-04T23:59")}, {at("2026-01-05T00:01")}, {at("2026-01-31T12:00")},
                                 {at("2026-02-01T00:00")}};
  // 01-31 (Saturday) and 02-01 (Sunday) are both in week 5: the newer counts.
  CHECK(kept(s, only(0, 0, 0, 2, 0)) == std::set<size_t>{3, 1});
  CHECK(kept(s, only(0, 0, 0, 3, 0)) == std::set<size_t>{3, 1, 0});
  CHECK(kept(s, only(0, 0, 0, 0, 2)) == std::set<size_t>{3, 2});
}

TEST_CASE("pinned snapshots and the newest are always kept") {
  std::vector<SnapshotTime> s = {{at("2026-01-01T00:00"), true}, {at("2026-01-02T00:00")}, {at("2026-01-03T00:00")}};
  auto tiers = retention_tiers(s, only(0, 0, 0, 0, 0));
  CHECK(tiers[0] == std::vector<std::string>{"pinned"});
  CHECK(tiers[1].empty());
  CHECK(tiers[2] == std::vector<std::string>{"newest"});
}

TEST_CASE("the tiers that keep a snapshot are all named") {
  std::vector<SnapshotTime> s = {{at("2026-01-01T00:00")}};
  auto tiers = retention_tiers(s, Retention{});
  CHECK(tiers[0] == std::vector<std::string>{"last", "hourly", "daily", "weekly", "monthly"});
}

TEST_CASE("retention documents are validated") {
  CHECK(Retention::from_json(nullptr).to_json() == Retention{}.to_json());
  CHECK(Retention::from_json({{"daily", 3}}).daily == 3);
  CHECK(Retention::from_json({{"daily", 3}}).hourly == 24);
  CHECK_ERROR_KIND(Retention::from_json({{"yearly", 1}}), ErrorKind::usage);
  CHECK_ERROR_KIND(Retention::from_json({{"daily", -1}}), ErrorKind::usage);
  CHECK_ERROR_KIND(Retention::from_json({{"daily", "7"}}), ErrorKind::usage);
  CHECK_ERROR_KIND(Retention::from_json(nlohmann::json::array()), ErrorKind::usage);
}

TEST_SUITE_END();

#pragma once
// Snapshot retention: which of a device's snapshots to keep. Part of a policy document:
//   "retention": {"last": 24, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12}
// (those are the defaults; a missing field takes its default, 0 turns a tier off).
// As restic's `forget --keep-*`: walking the snapshots newest first, each tier keeps the
// newest snapshot of each of its N most recent periods (UTC hours, days, ISO weeks,
// months) that hold a snapshot; "last" keeps the N newest. Pinned snapshots (taken
// before an order changed the endpoint, or on request) are always kept, and so is the
// newest. Periods count only those that hold snapshots, so a device that was off for a
// month keeps its history instead of losing it to the calendar.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirage::policy {

struct Retention {
  uint32_t last = 24;
  uint32_t hourly = 24;
  uint32_t daily = 7;
  uint32_t weekly = 4;
  uint32_t monthly = 12;

  /// Parses the "retention" object of a policy; throws Error(usage) naming the bad field.
  static Retention from_json(const nlohmann::json& doc);
  nlohmann::json to_json() const;
};

struct SnapshotTime {
  int64_t created_at = 0;  ///< ns since the epoch
  bool pinned = false;
};

/// For each snapshot (any order), the tiers that keep it ("last", "hourly", "daily",
/// "weekly", "monthly", "pinned"); an empty list means it expires.
std::vector<std::vector<std::string>> retention_tiers(const std::vector<SnapshotTime>& snapshots, const Retention& r);

}  // namespace mirage::policy

#pragma once
// The server's housekeeping: snapshot retention (per device, by its policy) and
// garbage collection runs, on request and on a schedule.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/catalog/catalog.hpp"
#include "libmirage/policy/retention.hpp"
#include "libmirage/store/gc.hpp"

namespace mirage::server {

/// The retention rule of the device's policy (the defaults for "default").
policy::Retention device_retention(catalog::Catalog& cat, const catalog::Device& device);

/// For each of `snapshots` (a device's, as Catalog::snapshots gives them), the tiers
/// that keep it; "capture" marks the snapshot an app capture in progress started from,
/// "revert" one a pending revert order goes back to.
std::vector<std::vector<std::string>> snapshot_tiers(catalog::Catalog& cat, const catalog::Device& device,
                                                     const std::vector<catalog::Snapshot>& snapshots);

/// The ids of the device's snapshots that no tier keeps (what expire_snapshots deletes).
std::vector<std::string> expiring_snapshots(catalog::Catalog& cat, const std::string& device);

/// Deletes the device's snapshots that no tier keeps, with an event; returns their ids.
/// Call inside a write transaction.
std::vector<std::string> expire_snapshots(catalog::Catalog& cat, const std::string& device);

/// A GC run: retention's expired snapshots, then the collection.
struct GcRan {
  store::GcReport gc;
  std::vector<std::string> expired_snapshots;
};
/// The collection's report plus "snapshots_expired" (a count) and "expired_snapshots".
void to_json(nlohmann::json& j, const GcRan& r);

/// Applies retention to every device, then collects garbage in the data directory
/// (its own connection: centralization goes on meanwhile). Records a "gc" event. A
/// dry run changes nothing and reports what the run would do: the snapshots it would
/// expire and the data only they hold.
GcRan run_gc(const std::filesystem::path& data, const store::GcOptions& options);

}  // namespace mirage::server

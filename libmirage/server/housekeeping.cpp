#include "libmirage/server/housekeeping.hpp"

#include <algorithm>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/store/repository.hpp"

namespace mirage::server {

using nlohmann::json;

policy::Retention device_retention(catalog::Catalog& cat, const catalog::Device& device) {
  auto doc = cat.policy(device.policy);
  if (!doc) return policy::Retention{};
  return policy::Retention::from_json(doc->value("retention", json()));
}

std::vector<std::vector<std::string>> snapshot_tiers(catalog::Catalog& cat, const catalog::Device& device,
                                                     const std::vector<catalog::Snapshot>& snapshots) {
  std::vector<policy::SnapshotTime> times;
  times.reserve(snapshots.size());
  for (const auto& s : snapshots) times.push_back({s.created_at, s.pinned});
  auto tiers = policy::retention_tiers(times, device_retention(cat, device));
  auto capture = cat.capture(device.id);
  // A snapshot a pending revert goes back to is kept until the device has reverted.
  std::vector<std::string> reverts;
  for (const auto& o : cat.orders(device.id, "pending"))
    if (o.spec.value("type", "") == "revert") reverts.push_back(o.spec.value("snapshot_id", ""));
  for (size_t i = 0; i < snapshots.size(); ++i) {
    if (capture && snapshots[i].id == *capture) tiers[i].push_back("capture");
    if (std::find(reverts.begin(), reverts.end(), snapshots[i].id) != reverts.end()) tiers[i].push_back("revert");
  }
  return tiers;
}

std::vector<std::string> expiring_snapshots(catalog::Catalog& cat, const std::string& device) {
  auto d = cat.device(device);
  if (!d) return {};
  auto snapshots = cat.snapshots(device);
  auto tiers = snapshot_tiers(cat, *d, snapshots);
  std::vector<std::string> out;
  for (size_t i = 0; i < snapshots.size(); ++i)
    if (tiers[i].empty()) out.push_back(snapshots[i].id);
  return out;
}

std::vector<std::string> expire_snapshots(catalog::Catalog& cat, const std::string& device) {
  auto expired = expiring_snapshots(cat, device);
  for (const auto& id : expired) cat.delete_snapshot(id);
  if (!expired.empty()) cat.add_event("snapshot.expired", device, {{"snapshots", expired}});
  return expired;
}

void to_json(json& j, const GcRan& r) {
  j = r.gc;
  j["snapshots_expired"] = r.expired_snapshots.size();
  j["expired_snapshots"] = r.expired_snapshots;
}

GcRan run_gc(const std::filesystem::path& data, const store::GcOptions& given) {
  store::Repository repo(data, false);
  auto& cat = repo.catalog();
  store::GcOptions options = given;
  GcRan out;
  for (const auto& d : cat.devices(std::nullopt)) {
    catalog::Transaction tx(cat, options.dry_run ? catalog::Transaction::Mode::read : catalog::Transaction::Mode::write);
    auto ids = options.dry_run ? expiring_snapshots(cat, d.id) : expire_snapshots(cat, d.id);
    tx.commit();
    out.expired_snapshots.insert(out.expired_snapshots.end(), ids.begin(), ids.end());
  }
  // A dry run marks as if those snapshots were gone, so that it counts what they alone hold.
  if (options.dry_run)
    options.skip_snapshots.insert(options.skip_snapshots.end(), out.expired_snapshots.begin(), out.expired_snapshots.end());
  out.gc = store::collect_garbage(repo, options);
  if (!options.dry_run) {
    // In the transaction log like every other transfer: what repacking copied; GC adds no data.
    json detail = out;
    detail["transaction"] = "gc";
    detail["bytes_moved"] = out.gc.moved_bytes;
    detail["unique_bytes"] = 0;
    cat.add_event("gc", "", detail);
  }
  return out;
}

}  // namespace mirage::server

#include "libmirage/catalog/catalog.hpp"

#include <algorithm>
#include <numeric>

#include "libmirage/catalog/sqlite/catalog_sqlite.hpp"
#include "libmirage/util/clock.hpp"

namespace mirage::catalog {

std::vector<std::optional<ChunkLocation>> ChunkIndex::find_chunks(std::span<const Digest> ids) {
  std::vector<uint32_t> order(ids.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return ids[a] < ids[b]; });
  std::vector<std::optional<ChunkLocation>> out(ids.size());
  for (size_t k = 0; k < order.size(); ++k) {
    uint32_t i = order[k];
    if (k > 0 && ids[order[k - 1]] == ids[i])
      out[i] = out[order[k - 1]];  // asked twice: looked up once
    else
      out[i] = find_chunk(ids[i]);
  }
  return out;
}

std::string_view state_name(DeviceState s) {
  switch (s) {
    case DeviceState::pending: return "pending";
    case DeviceState::accepted: return "accepted";
    case DeviceState::rejected: return "rejected";
    case DeviceState::replaced: return "replaced";
  }
  return "pending";
}

DeviceState state_from_name(std::string_view name) {
  if (name == "accepted") return DeviceState::accepted;
  if (name == "rejected") return DeviceState::rejected;
  if (name == "replaced") return DeviceState::replaced;
  return DeviceState::pending;
}

void to_json(nlohmann::json& j, const Device& d) {
  j = {{"device_id", d.id},
       {"state", state_name(d.state)},
       {"reference", d.reference},
       {"hostname", d.hostname},
       {"policy", d.policy},
       {"inventory", d.inventory},
       {"registered_at", util::rfc3339(d.registered_at)},
       {"last_seen", util::rfc3339(d.last_seen)},
       {"tags", d.tags},
       {"volume", d.volume},
       {"name", d.name},
       {"replaced_by", d.replaced_by.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.replaced_by)}};
}

void to_json(nlohmann::json& j, const Snapshot& s) {
  j = {{"snapshot_id", s.id},     {"device_id", s.device}, {"tree", s.tree.hex()},
       {"time", util::rfc3339(s.created_at)}, {"time_ns", s.created_at}, {"stats", s.stats},
       {"pinned", s.pinned}};
  if (s.given.contains("layers")) j["layers"] = s.given["layers"];
}

void to_json(nlohmann::json& j, const LayerRow& l) {
  j = {{"name", l.name}, {"version", l.version}, {"ref", l.name + "@" + std::to_string(l.version)}, {"kind", l.kind},
       {"tree", l.tree.hex()}, {"created", util::rfc3339(l.created_at)}};
}

void to_json(nlohmann::json& j, const Order& o) {
  j = {{"order_id", o.id}, {"device_id", o.device}, {"spec", o.spec}, {"state", o.state},
       {"created", util::rfc3339(o.created_at)}};
  if (o.finished_at) j["finished"] = util::rfc3339(o.finished_at);
  if (!o.result.empty()) j["result"] = o.result;
}

Transaction::Transaction(Catalog& catalog, Mode mode) : m_tx(catalog.begin(mode)) {}

Transaction::~Transaction() = default;

void Transaction::commit() { m_tx->commit(); }

std::unique_ptr<Catalog> open(const std::string& path, bool create, Access access) {
  return sqlite::open(path, create, access);
}

}  // namespace mirage::catalog

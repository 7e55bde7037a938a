// OS migration: the preflight check of devices' latest snapshots against a new base
// layer (migrate/preflight.hpp), its report kept per device in the catalog.
#include <map>

#include "libmirage/migrate/preflight.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"

namespace mirage::server {

using nlohmann::json;

MigrateCheck MigrateCheck::parse(const Params& p) {
  MigrateCheck m;
  m.targets = Targets::parse(p);
  m.base = p.text_or("base");
  return m;
}

void to_json(json& j, const MigrateCheckReply& r) {
  j = {{"base", r.base.empty() ? json() : json(r.base)}, {"devices", r.devices}, {"summary", r.summary}};
}

namespace {

/// One device's report: its latest snapshot read through the server's own repository.
json check_device(Context& c, const std::string& id, const std::optional<migrate::NewBase>& base) {
  auto& cat = c.cat();
  auto d = accepted_device(cat, id);
  auto snaps = cat.snapshots(id);
  if (snaps.empty()) throw Error(ErrorKind::precondition, "device " + id + " has no snapshot yet (run mirage-centralize on it)");
  const auto& snap = snaps.back();
  migrate::RepositorySource source(c.repo);
  migrate::SnapshotReader reader(source, tree::decode_entry(snap.root, "snapshot " + snap.id + " root entry"));
  migrate::PreflightInput input{base, std::nullopt};
  if (d.inventory.contains("root_free_bytes") && d.inventory["root_free_bytes"].is_number_unsigned())
    input.free_bytes = d.inventory["root_free_bytes"].get<uint64_t>();
  json report = migrate::preflight(reader, input);
  report["device_id"] = id;
  report["hostname"] = d.hostname;
  report["snapshot_id"] = snap.id;
  report["base"] = base ? json(base->ref) : json();
  report["free_bytes"] = input.free_bytes ? json(*input.free_bytes) : json();
  report["checked_at"] = util::rfc3339(util::now_ns());
  cat.set_migration_check(id, report);
  return report;
}

}  // namespace

MigrateCheckReply migrate_check(Context& c, const MigrateCheck& p) {
  auto& cat = c.cat();
  auto devices = target_devices(cat, p.targets);
  MigrateCheckReply r;
  std::optional<migrate::NewBase> base;
  if (!p.base.empty()) {
    auto row = resolve_layer(cat, p.base);
    if (row.kind != "base") throw Error(ErrorKind::usage, "layer " + p.base + " is a " + row.kind + " layer, not a base layer");
    r.base = row.name + "@" + std::to_string(row.version);
    migrate::RepositorySource source(c.repo);
    base = migrate::base_from_layer(source, row.tree, r.base, row.manifest);
  }
  json summary = {{"devices", devices.size()}, {"inhibited", 0}, {"clean", 0}, {"errors", 0}, {"codes", json::object()}};
  std::map<std::string, int> codes;
  for (const auto& id : devices) {
    json entry;
    try {
      entry = check_device(c, id, base);
    } catch (const Error& e) {
      entry = {{"device_id", id}, {"error", {{"kind", kind_name(e.kind())}, {"message", e.what()}}}};
      summary["errors"] = summary["errors"].get<int>() + 1;
      r.devices.push_back(std::move(entry));
      continue;
    }
    std::string state = entry["inhibited"].get<bool>() ? "inhibited" : "clean";
    summary[state] = summary[state].get<int>() + 1;
    for (const auto& f : entry["findings"]) ++codes[f["code"].get<std::string>()];
    r.devices.push_back(std::move(entry));
  }
  for (const auto& [code, n] : codes) summary["codes"][code] = n;
  r.summary = std::move(summary);
  cat.add_event("migrate.check", devices.size() == 1 ? devices[0] : "",
                {{"devices", devices.size()}, {"base", r.base}, {"inhibited", r.summary["inhibited"]}, {"by", c.by()}});
  return r;
}

}  // namespace mirage::server

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

json device_error(const std::string& id, const Error& e) {
  return {{"device_id", id}, {"error", {{"kind", kind_name(e.kind())}, {"message", e.what()}}}};
}

/// How many devices are blocked, clean or not checked, and per code how many have it.
json summary(const json& devices) {
  json s = {{"devices", devices.size()}, {"inhibited", 0}, {"clean", 0}, {"errors", 0}, {"codes", json::object()}};
  std::map<std::string, int> codes;
  for (const auto& d : devices) {
    std::string state = d.contains("error") ? "errors" : d["inhibited"].get<bool>() ? "inhibited" : "clean";
    s[state] = s[state].get<int>() + 1;
    for (const auto& f : d.value("findings", json::array())) ++codes[f["code"].get<std::string>()];
  }
  for (const auto& [code, n] : codes) s["codes"][code] = n;
  return s;
}

}  // namespace

MigrateCheckReply migrate_reports(Context& c, const Targets& p) {
  auto& cat = c.cat();
  MigrateCheckReply r;
  for (const auto& id : target_devices(cat, p)) {
    auto stored = cat.migration_check(id);
    if (stored)
      r.devices.push_back(stored->first);
    else
      r.devices.push_back(device_error(id, Error(ErrorKind::not_found, "device " + id + " has not been checked yet (mirage-migrate check)")));
  }
  r.summary = summary(r.devices);
  return r;
}

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
  for (const auto& id : devices) {
    try {
      r.devices.push_back(check_device(c, id, base));
    } catch (const Error& e) {
      r.devices.push_back(device_error(id, e));
    }
  }
  r.summary = summary(r.devices);
  cat.add_event("migrate.check", devices.size() == 1 ? devices[0] : "",
                {{"devices", devices.size()}, {"base", r.base}, {"inhibited", r.summary["inhibited"]}, {"by", c.by()}});
  return r;
}

}  // namespace mirage::server

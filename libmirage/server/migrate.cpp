// OS migration: the preflight check of devices' latest snapshots against a new base
// layer (migrate/preflight.hpp), its report kept per device in the catalog.
#include <map>
#include <set>

#include "libmirage/layer/image.hpp"
#include "libmirage/migrate/preflight.hpp"
#include "libmirage/migrate/rules.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

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

/// The packages of the base layer the device was given; none when it has none (or the
/// layer is gone: the check then knows the old release only from the device's own marks).
std::set<std::string> given_base_packages(catalog::Catalog& cat, const std::string& id) {
  for (const auto& ref : cat.given(id).value("layers", std::vector<std::string>{})) {
    try {
      auto row = resolve_layer(cat, ref);
      if (row.kind == "base") return migrate::layer_packages(row.manifest, ref);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) throw;
    }
  }
  return {};
}

/// One device's report: its latest snapshot read through the server's own repository.
json check_device(Context& c, const std::string& id, const std::optional<migrate::NewBase>& base) {
  auto& cat = c.cat();
  auto d = accepted_device(cat, id);
  auto snaps = cat.snapshots(id);
  if (snaps.empty()) throw Error(ErrorKind::precondition, "device " + id + " has no snapshot yet (run mirage-centralize on it)");
  const auto& snap = snaps.back();
  migrate::RepositorySource source(c.repo);
  migrate::SnapshotReader reader(source, tree::decode_entry(snap.root, "snapshot " + snap.id + " root entry"));
  migrate::PreflightInput input{base, std::nullopt, given_base_packages(cat, id)};
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

MigrateStart MigrateStart::parse(const Params& p) {
  MigrateStart m;
  m.targets = Targets::parse(p);
  m.base = p.text("base");
  m.rules = p.has("rules") ? p.object("rules", migrate::k_max_rules_bytes, "1 MiB of rules") : nlohmann::json();
  if (!m.rules.is_null()) migrate::Rules::from_json(m.rules);  // refused here, not on the device
  m.keep_old_root_days = static_cast<int>(p.integer("keep_old_root_days", 10, 2, 60));
  m.force = p.flag("force");
  m.dry_run = p.flag("dry_run");
  return m;
}

namespace {

/// One device's migration order (MigrateStart's comment has the spec).
catalog::Order migration_order(Context& c, const MigrateStart& p, const catalog::LayerRow& base, const std::string& id) {
  auto& cat = c.cat();
  auto d = accepted_device(cat, id);
  for (const auto& o : cat.orders(id, name(OrderState::pending)))
    if (o.spec.value("type", "") == name(OrderKind::migrate))
      throw Error(ErrorKind::precondition, "device " + id + " has a migration queued already (order " + o.id + ")");
  std::vector<std::string> from = cat.given(id).value("layers", std::vector<std::string>{});
  json layers = {base.name + "@" + std::to_string(base.version)}, recapture = json::array();
  for (const auto& driver : matching_drivers(cat, d)) layers.push_back(driver.name + "@" + std::to_string(driver.version));
  for (const auto& ref : from)
    if (resolve_layer(cat, ref).kind == "app") recapture.push_back(ref);
  catalog::Order o;
  o.id = util::random_hex(8);
  o.device = id;
  o.spec = {{"type", OrderKind::migrate},  {"migration_id", util::random_hex(6)}, {"base", layers[0]},
            {"layers", layers},           {"from_layers", from},                  {"recapture", recapture},
            {"rules", p.rules},           {"keep_old_root_days", p.keep_old_root_days}};
  o.created_at = util::now_ns();
  cat.add_order(o);
  cat.add_event("order.created", id, {{"order_id", o.id}, {"spec", o.spec}, {"by", c.by()}});
  return o;
}

}  // namespace

OrdersReply migrate_start(Context& c, const MigrateStart& p) {
  auto& cat = c.cat();
  auto base = resolve_layer(cat, p.base);
  if (base.kind != "base") throw Error(ErrorKind::usage, "layer " + p.base + " is a " + base.kind + " layer, not a base layer");
  std::string ref = base.name + "@" + std::to_string(base.version);
  migrate::RepositorySource source(c.repo);
  auto new_base = migrate::base_from_layer(source, base.tree, ref, base.manifest);
  auto devices = target_devices(cat, p.targets);
  // The preflight first (each report kept, as migrate.check keeps it): an inhibitor refuses.
  for (const auto& id : devices) {
    json report = check_device(c, id, new_base);
    if (report.value("inhibited", false) && !p.force)
      throw Error(ErrorKind::precondition, "device " + id + " has migration inhibitors (see mirage-migrate check --device " +
                                               id + "); give --force to migrate anyway");
  }
  catalog::Transaction tx(cat);
  OrdersReply r{{}, std::vector<std::string>{}};
  for (const auto& id : devices) {
    r.orders.push_back(migration_order(c, p, base, id));
    for (const auto& app : r.orders.back().spec["recapture"])
      r.warnings->push_back("device " + id + ": app layer " + app.get<std::string>() + " was captured on the old base: recapture it on " + ref);
  }
  if (!p.dry_run) tx.commit();
  return r;
}

OrdersReply migrate_rollback(Context& c, const DeviceId& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  accepted_device(cat, p.device_id);
  std::optional<catalog::Order> last;
  for (auto& o : cat.orders(p.device_id, name(OrderState::done)))
    if (o.spec.value("type", "") == name(OrderKind::migrate) && (!last || o.finished_at >= last->finished_at)) last = o;
  if (!last) throw Error(ErrorKind::not_found, "device " + p.device_id + " has no finished migration to roll back");
  std::string id = last->spec.value("migration_id", "");
  for (const auto* state : {"pending", "done"})
    for (const auto& o : cat.orders(p.device_id, state))
      if (o.spec.value("migration_id", "") == id && o.spec.value("type", "") == name(OrderKind::revert))
        throw Error(ErrorKind::precondition, "migration " + id + " of device " + p.device_id + " is rolled back already (order " + o.id + ", " + o.state + ")");
  OrderRevert revert{p.device_id, last->result.value("protected_by", ""), RevertMode::system, id};
  if (revert.snapshot.empty()) throw Error(ErrorKind::integrity, "migration order " + last->id + " names no protecting snapshot");
  OrdersReply r{{compose_revert(cat, revert, c.by())}, std::nullopt};
  tx.commit();
  return r;
}

}  // namespace mirage::server

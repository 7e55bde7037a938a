// Orders: what a device is told to apply (its layers) or do (a snapshot). Composing
// an order is a plain function over the catalog (compose_orders); the methods read
// their params, open the transaction and call it.
#include <algorithm>

#include "libmirage/layer/image.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

std::string ref_of(const catalog::LayerRow& row) { return row.name + "@" + std::to_string(row.version); }

}  // namespace

std::vector<catalog::LayerRow> matching_drivers(catalog::Catalog& cat, const catalog::Device& d) {
  std::vector<catalog::LayerRow> out;
  for (const auto& row : cat.layers("")) {
    if (row.kind != "driver") continue;
    auto latest = cat.layer(row.name, 0);
    if (latest->version != row.version) continue;
    layer::Layer l;
    layer::parse_manifest(row.manifest, l, "layer " + row.name);
    if (layer::matches_inventory(l, d.inventory)) out.push_back(row);
  }
  return out;
}

namespace {

/// The layers one device's new order names: for enforce, those it will have; else a
/// new base replaces its base, apps join its app layers (replacing an earlier version
/// of the same name), remove_apps drops some, and the drivers matching it follow the
/// base. Appends to `warnings` an app captured on another base.
std::vector<catalog::LayerRow> choose_layers(catalog::Catalog& cat, const OrderCreate& p, const catalog::Device& d,
                                             const std::vector<std::string>& current, std::vector<std::string>& warnings) {
  std::vector<catalog::LayerRow> chosen;
  if (p.type == OrderKind::enforce) {
    if (current.empty()) throw Error(ErrorKind::precondition, "device " + d.id + " has no layers to enforce");
    for (const auto& ref : current) chosen.push_back(resolve_layer(cat, ref));
    return chosen;
  }
  std::string base_ref = p.base;
  std::vector<std::string> app_refs;
  for (const auto& ref : current) {
    auto row = resolve_layer(cat, ref);
    if (row.kind == "base" && base_ref.empty()) base_ref = ref;
    if (row.kind == "app" && p.type == OrderKind::assign) app_refs.push_back(ref);
  }
  if (base_ref.empty()) throw Error(ErrorKind::usage, "device " + d.id + " has no base layer: give --base");
  auto drop = p.remove_apps;
  for (const auto& ref : p.apps) drop.push_back(layer::parse_ref(ref).first);
  std::erase_if(app_refs, [&](const std::string& r) {
    return std::find(drop.begin(), drop.end(), layer::parse_ref(r).first) != drop.end();
  });
  app_refs.insert(app_refs.end(), p.apps.begin(), p.apps.end());
  auto base = resolve_layer(cat, base_ref);
  if (base.kind != "base") throw Error(ErrorKind::usage, "layer " + base_ref + " is a " + base.kind + " layer, not a base");
  chosen.push_back(base);
  for (auto& driver : matching_drivers(cat, d)) chosen.push_back(std::move(driver));
  for (const auto& ref : app_refs) {
    auto a = resolve_layer(cat, ref);
    if (a.kind != "app") throw Error(ErrorKind::usage, "layer " + ref + " is a " + a.kind + " layer, not an app layer");
    std::string on = a.manifest.value("captured_on", "");
    if (!on.empty() && layer::parse_ref(on).first != layer::parse_ref(base_ref).first)
      warnings.push_back("app layer " + ref_of(a) + " was captured on " + on + ", not on " + ref_of(chosen.front()));
    chosen.push_back(a);
  }
  return chosen;
}

/// A migration's steps as events ("migrate.<step>", each with its bytes moved), then
/// "migrate.done" (the app layers to recapture), "migrate.failed" or "migrate.rolled_back".
void migration_events(catalog::Catalog& cat, const catalog::Order& o, const std::string& state, const json& result) {
  json base = {{"order_id", o.id}, {"migration_id", o.spec.value("migration_id", "")}};
  bool rollback = o.spec.value("type", "") == name(OrderKind::revert);
  for (const auto& step : result.value("steps", json::array())) {
    json data = base;
    data.update(step);
    cat.add_event("migrate." + step.value("step", std::string("step")), o.device, data);
  }
  json data = base;
  data["bytes_moved"] = result.value("wire_bytes", uint64_t(0));
  if (state == name(OrderState::failed)) data["error"] = result.value("error", "");
  if (!rollback && state == name(OrderState::done)) {
    data["base"] = o.spec.value("base", "");
    data["recapture"] = o.spec.value("recapture", json::array());
    data["old_root"] = result.value("old_root", json::object());
  }
  cat.add_event(rollback && state == name(OrderState::done) ? std::string("migrate.rolled_back") : "migrate." + state,
                o.device, data);
}

}  // namespace

catalog::LayerRow resolve_layer(catalog::Catalog& cat, const std::string& ref) {
  auto [name, version] = layer::parse_ref(ref);
  auto row = cat.layer(name, version);
  if (!row) throw Error(ErrorKind::not_found, "layer " + ref + ": not found (see mirage-capture list)");
  return *row;
}

OrderCreate OrderCreate::parse(const Params& p) {
  OrderCreate o;
  o.targets = Targets::parse(p);
  // An order of type snapshot is snapshot.request's.
  std::string type = p.text_or("type", name(OrderKind::assign));
  if (type != name(OrderKind::assign) && type != name(OrderKind::enforce) && type != name(OrderKind::provision))
    throw Error(ErrorKind::usage, "order type '" + printable(type, 100) + "': expected assign, enforce or provision");
  o.type = server::parse<OrderKind>(type);
  o.apps = p.texts("apps");
  o.base = p.text_or("base");
  o.remove_apps = p.texts("remove_apps");
  o.remove_apps_given = p.has("remove_apps");
  o.remove_user_apps = p.flag("remove_user_apps") || o.type == OrderKind::provision;
  o.dry_run = p.flag("dry_run");
  if (o.type == OrderKind::assign && o.base.empty() && o.apps.empty() && !o.remove_apps_given)
    throw Error(ErrorKind::usage, "give --base, --app or --remove-app");
  if (o.type == OrderKind::provision && o.base.empty()) throw Error(ErrorKind::usage, "--provision needs --base");
  return o;
}

void to_json(json& j, const OrdersReply& r) {
  j = {{"orders", r.orders}};
  if (r.warnings) j["warnings"] = *r.warnings;
}

OrdersReply compose_orders(catalog::Catalog& cat, const OrderCreate& p, const std::string& by) {
  OrdersReply r{{}, std::vector<std::string>{}};
  for (const auto& device : target_devices(cat, p.targets)) {
    auto d = accepted_device(cat, device);
    std::vector<std::string> current = cat.given(device).value("layers", std::vector<std::string>{});
    // The newest pending order that names layers (a layer order, a revert giving back
    // a snapshot's) is what the device will have: later orders build on it.
    auto pending = cat.orders(device, name(OrderState::pending));
    std::erase_if(pending, [](const catalog::Order& o) { return !o.spec.contains("layers"); });
    if (!pending.empty()) current = pending.back().spec.value("layers", std::vector<std::string>{});
    json refs = json::array();
    for (const auto& row : choose_layers(cat, p, d, current, *r.warnings)) refs.push_back(ref_of(row));
    // A revert or a migration queued stays: it was asked for, and it runs in its turn.
    for (const auto& o : pending)
      if (o.spec.value("type", "") != name(OrderKind::revert) && o.spec.value("type", "") != name(OrderKind::migrate))
        cat.finish_order(o.id, name(OrderState::superseded), json::object());
    catalog::Order o;
    o.id = util::random_hex(8);
    o.device = device;
    o.spec = {{"type", p.type}, {"layers", refs}, {"remove_user_apps", p.remove_user_apps}};
    o.created_at = util::now_ns();
    cat.add_order(o);
    cat.add_event("order.created", device, {{"order_id", o.id}, {"spec", o.spec}, {"by", by}});
    r.orders.push_back(o);
  }
  return r;
}

OrdersReply order_create(Context& c, const OrderCreate& p) {
  catalog::Transaction tx(c.cat());
  auto r = compose_orders(c.cat(), p, c.by());
  if (!p.dry_run) tx.commit();  // a dry run rolls back
  return r;
}

void to_json(json& j, const OrderNext& r) {
  j = {{"device_id", r.device_id}, {"given", r.given}, {"inventory", r.inventory}};
  if (r.order) j["order"] = *r.order;
}

OrderNext order_next(Context& c, const DeviceId& p) {
  auto d = accepted_device(c.cat(), p.device_id);
  auto pending = c.cat().orders(p.device_id, name(OrderState::pending));
  OrderNext r{p.device_id, c.cat().given(p.device_id), d.inventory, std::nullopt};
  if (!pending.empty()) r.order = pending.front();
  return r;
}

catalog::Order order_get(Context& c, const OrderId& p) {
  auto o = c.cat().order(p.order_id);
  if (!o) throw Error(ErrorKind::not_found, "order " + p.order_id + ": not found");
  return *o;
}

OrderReport OrderReport::parse(const Params& p) {
  OrderReport r;
  r.order_id = p.text("order_id");
  std::string state = p.text("state");
  if (state != name(OrderState::done) && state != name(OrderState::failed))
    throw Error(ErrorKind::usage, "state '" + printable(state, 100) + "': expected done or failed");
  r.state = server::parse<OrderState>(state);
  r.device_id = p.text("device_id");
  r.result = p.has("result") ? p.value("result") : json::object();
  return r;
}

catalog::Order order_report(Context& c, const OrderReport& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto o = cat.order(p.order_id);
  if (!o) throw Error(ErrorKind::not_found, "order " + p.order_id + ": not found");
  if (o->device != p.device_id) throw Error(ErrorKind::permission, "order " + p.order_id + " belongs to another device");
  if (parse<OrderState>(o->state) != OrderState::pending)
    throw Error(ErrorKind::precondition, "order " + p.order_id + " is " + o->state + ", not pending");
  const json& result = p.result;
  std::string state = name(p.state);
  cat.finish_order(p.order_id, state, result);
  OrderKind type = o->spec.contains("type") ? o->spec["type"].get<OrderKind>() : OrderKind::assign;
  bool done = p.state == OrderState::done;
  if (done && type == OrderKind::revert) {
    // The layers the device had at the snapshot, when it recorded them (system, full).
    if (o->spec.contains("given")) {
      json given = o->spec["given"];
      given["order_id"] = p.order_id;
      cat.set_given(o->device, given);
    }
  } else if (done && type != OrderKind::snapshot) {
    cat.set_given(o->device, {{"layers", o->spec["layers"]}, {"id_map", result.value("id_map", json::object())},
                              {"order_id", p.order_id}});
  }
  cat.add_event("order." + state, o->device,
                {{"order_id", p.order_id},
                 {"transaction", type == OrderKind::assign ? std::string("layer_update") : name(type)},
                 {"bytes_moved", result.value("wire_bytes", uint64_t(0))},
                 {"unique_bytes", result.value("apply", json::object()).value("bytes_fetched", uint64_t(0))},
                 {"spec", o->spec},
                 {"result", result}});
  if (type == OrderKind::migrate || o->spec.contains("migration_id")) migration_events(cat, *o, state, result);
  if (done && type == OrderKind::provision) {
    int64_t cvd = cat.start_cvd(o->device, "provision order " + p.order_id);
    cat.add_event("cvd.started", o->device, {{"cvd", cvd}, {"order_id", p.order_id}});
  }
  tx.commit();
  return *cat.order(p.order_id);
}

OrderRevert OrderRevert::parse(const Params& p) {
  OrderRevert r;
  r.device = p.text("device");
  if (!valid_device_id(r.device)) throw Error(ErrorKind::usage, "device '" + printable(r.device, 100) + "': not a device id");
  r.snapshot = p.text("snapshot");
  if (r.snapshot.size() > 128) throw Error(ErrorKind::usage, "snapshot '" + printable(r.snapshot, 100) + "': too long");
  r.mode = p.choice("mode", RevertMode::system);
  r.stream = p.flag("stream");
  r.bwlimit = static_cast<uint64_t>(p.integer("bwlimit", 0, 0, int64_t(1) << 50));
  if (r.bwlimit && !r.stream) throw Error(ErrorKind::usage, "bwlimit is for a streamed revert (stream: true)");
  // A streamed revert is a whole-device one, as mirage-restore's --stream (which needs
  // --mode full) asks for it: another mode over the RPC is refused the same way.
  if (r.stream && r.mode != RevertMode::full)
    throw Error(ErrorKind::usage, std::string("stream: true is for mode full (a whole-device revert), not mode ") + name(r.mode));
  return r;
}

catalog::Order compose_revert(catalog::Catalog& cat, const OrderRevert& p, const std::string& by) {
  accepted_device(cat, p.device);
  std::optional<catalog::Snapshot> snap;
  if (p.snapshot == "latest") {
    auto all = cat.snapshots(p.device);
    if (!all.empty()) snap = all.back();
  } else {
    snap = cat.snapshot(p.snapshot);
  }
  if (!snap || snap->device != p.device)
    throw Error(ErrorKind::not_found, "snapshot " + printable(p.snapshot, 100) + " of device " + p.device + ": not found");
  json spec = {{"type", OrderKind::revert}, {"snapshot_id", snap->id}, {"mode", p.mode}};
  if (!p.migration_id.empty()) spec["migration_id"] = p.migration_id;
  if (p.stream) spec["stream"] = true;
  if (p.bwlimit) spec["bwlimit"] = p.bwlimit;
  // The layer state follows the machine area; user-data leaves both as they are.
  if (p.mode != RevertMode::user_data && snap->given.contains("layers")) {
    spec["given"] = {{"layers", snap->given["layers"]}, {"id_map", snap->given.value("id_map", json::object())}};
    spec["layers"] = snap->given["layers"];
  }
  for (const auto& o : cat.orders(p.device, name(OrderState::pending)))
    if (o.spec.value("type", "") == name(OrderKind::revert)) cat.finish_order(o.id, name(OrderState::superseded), json::object());
  catalog::Order o;
  o.id = util::random_hex(8);
  o.device = p.device;
  o.spec = spec;
  o.state = name(OrderState::pending);
  o.created_at = util::now_ns();
  cat.add_order(o);
  cat.add_event("order.created", p.device, {{"order_id", o.id}, {"spec", o.spec}, {"by", by}});
  return o;
}

OrdersReply order_revert(Context& c, const OrderRevert& p) {
  c.device = p.device;  // its params name it "device": the audit event's device
  catalog::Transaction tx(c.cat());
  OrdersReply r{{compose_revert(c.cat(), p, c.by())}, std::nullopt};
  tx.commit();
  return r;
}

void to_json(json& j, const PendingOrders& r) { j = {{"device_id", r.device_id}, {"pending", r.pending}}; }

PendingOrders order_pending(Context& c, const DeviceId& p) {
  return {p.device_id, c.cat().orders(p.device_id, name(OrderState::pending)).size()};
}

}  // namespace mirage::server

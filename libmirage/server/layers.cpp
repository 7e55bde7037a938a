// The layer side of the handler table: captures, layer versions, orders, status.
#include <algorithm>

#include "libmirage/layer/image.hpp"
#include "libmirage/server/params.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

json layer_json(const catalog::LayerRow& row, bool with_manifest) {
  json j = row;
  j["captured_on"] = row.manifest.value("captured_on", "");
  if (row.manifest.contains("match")) j["match"] = row.manifest["match"];
  j["whiteouts"] = row.manifest.contains("whiteouts") ? row.manifest["whiteouts"].size() : 0;
  if (with_manifest) j["manifest"] = row.manifest;
  return j;
}

}  // namespace

bool Service::names_layer(const std::string& device, const std::string& ref) {
  auto& cat = repo().catalog();
  auto in = [&](const json& spec) {
    for (const auto& r : spec.value("layers", json::array()))
      if (r == ref) return true;
    return false;
  };
  if (in(cat.given(device))) return true;
  for (const auto& o : cat.orders(device, ""))
    if (in(o.spec)) return true;
  return false;
}

void Service::register_layer_handlers() {
  auto resolve = [this](const std::string& ref) {
    auto [name, version] = layer::parse_ref(ref);
    auto row = repo().catalog().layer(name, version);
    if (!row) throw Error(ErrorKind::not_found, "layer " + ref + ": not found (see mirage-capture list)");
    return *row;
  };

  m_handlers["layer.commit"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    layer::parse_ref(name);  // validates the name
    if (name.find('@') != std::string::npos) throw Error(ErrorKind::usage, "layer name '" + name + "': no @VERSION here");
    if (!req.params.contains("manifest")) throw Error(ErrorKind::usage, "missing parameter 'manifest'");
    layer::Layer l;
    try {
      layer::parse_manifest(req.params["manifest"], l, "layer " + name);
    } catch (const Error& e) {
      throw Error(ErrorKind::usage, e.what());
    }
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    if (auto prev = cat.layer(name, 0); prev && prev->kind != layer::kind_name(l.kind))
      throw Error(ErrorKind::usage, "layer " + name + " is a " + prev->kind + " layer, not " +
                                        std::string(layer::kind_name(l.kind)));
    verify_closure(l.root.subtree, std::nullopt, "layer " + name);
    uint32_t version = cat.add_layer(name, std::string(layer::kind_name(l.kind)), l.root.subtree, req.params["manifest"]);
    cat.end_upload("capture:" + caller.name);
    auto row = *cat.layer(name, version);
    cat.add_event("layer.captured", req.params.value("device_id", ""),
                  {{"layer", row.name + "@" + std::to_string(version)}, {"kind", row.kind}, {"by", caller.name},
                   {"stats", req.params.value("stats", json::object())}});
    tx.commit();
    reply.result = layer_json(row, false);
  };

  m_handlers["layer.list"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    json list = json::array();
    for (const auto& row : repo().catalog().layers(req.params.value("name", ""))) list.push_back(layer_json(row, false));
    reply.result = {{"layers", list}};
  };

  m_handlers["layer.get"] = [this, resolve](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    auto row = resolve(str_param(req.params, "ref"));
    if (caller.role == "device" && !names_layer(caller.name, row.name + "@" + std::to_string(row.version)))
      throw Error(ErrorKind::permission, "device " + caller.name + " may read only the layers its orders name");
    reply.result = layer_json(row, true);
  };

  m_handlers["capture.begin"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string device = str_param(req.params, "device_id");
    auto d = accepted_device(device);
    if (!d.reference)
      throw Error(ErrorKind::precondition, "device " + device + " is not a reference device (accept it with --reference)");
    auto snaps = repo().catalog().snapshots(device);
    if (snaps.empty()) throw Error(ErrorKind::precondition, "device " + device + " has no snapshot yet (run mirage-centralize on it)");
    repo().catalog().set_capture(device, snaps.back().id);
    repo().catalog().add_event("capture.begin", device, {{"snapshot_id", snaps.back().id}, {"by", caller.name}});
    reply.result = {{"device_id", device}, {"before", snaps.back().id}};
  };

  m_handlers["capture.get"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = str_param(req.params, "device_id");
    auto snap = repo().catalog().capture(device);
    if (!snap) throw Error(ErrorKind::precondition, "device " + device + ": no capture begun (run mirage-capture app begin)");
    reply.result = {{"device_id", device}, {"before", *snap}};
  };

  m_handlers["order.create"] = [this, resolve](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    auto devices = target_devices(req.params);
    std::string type = req.params.value("type", "assign");
    if (type != "assign" && type != "enforce" && type != "provision")
      throw Error(ErrorKind::usage, "order type '" + type + "': expected assign, enforce or provision");
    auto apps = str_list(req.params, "apps");
    std::string base = req.params.value("base", "");
    if (type == "assign" && base.empty() && apps.empty() && !req.params.contains("remove_apps"))
      throw Error(ErrorKind::usage, "give --base, --app or --remove-app");
    if (type == "provision" && base.empty()) throw Error(ErrorKind::usage, "--provision needs --base");
    bool remove_user_apps = req.params.value("remove_user_apps", false) || type == "provision";
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    json orders = json::array(), warnings = json::array();
    for (const auto& device : devices) {
      auto d = accepted_device(device);
      json given = cat.given(device);
      std::vector<std::string> current = given.value("layers", std::vector<std::string>{});
      // The newest pending order is what the device will have: later orders build on it.
      auto pending = cat.orders(device, "pending");
      std::erase_if(pending, [](const catalog::Order& p) { return p.spec.value("type", "") == "snapshot"; });
      if (!pending.empty()) current = pending.back().spec.value("layers", std::vector<std::string>{});
      std::vector<catalog::LayerRow> chosen;
      if (type == "enforce") {
        if (current.empty()) throw Error(ErrorKind::precondition, "device " + device + " has no layers to enforce");
        for (const auto& ref : current) chosen.push_back(resolve(ref));
      } else {
        // A new base replaces the base; an app layer joins the device's app layers
        // (replacing an earlier version of the same name); remove_apps drops some.
        std::string base_ref = base;
        std::vector<std::string> app_refs;
        for (const auto& ref : current) {
          auto row = resolve(ref);
          if (row.kind == "base" && base_ref.empty()) base_ref = ref;
          if (row.kind == "app" && type == "assign") app_refs.push_back(ref);
        }
        if (base_ref.empty()) throw Error(ErrorKind::usage, "device " + device + " has no base layer: give --base");
        auto drop = str_list(req.params, "remove_apps");
        for (const auto& ref : apps) drop.push_back(layer::parse_ref(ref).first);
        std::erase_if(app_refs, [&](const std::string& r) {
          return std::find(drop.begin(), drop.end(), layer::parse_ref(r).first) != drop.end();
        });
        for (const auto& ref : apps) app_refs.push_back(ref);
        if (!base_ref.empty()) {
          auto b = resolve(base_ref);
          if (b.kind != "base") throw Error(ErrorKind::usage, "layer " + base_ref + " is a " + b.kind + " layer, not a base");
          chosen.push_back(b);
          for (const auto& row : cat.layers("")) {
            if (row.kind != "driver") continue;
            auto latest = cat.layer(row.name, 0);
            if (latest->version != row.version) continue;
            layer::Layer l;
            layer::parse_manifest(row.manifest, l, "layer " + row.name);
            if (layer::matches_inventory(l, d.inventory)) chosen.push_back(row);
          }
        }
        for (const auto& ref : app_refs) {
          auto a = resolve(ref);
          if (a.kind != "app") throw Error(ErrorKind::usage, "layer " + ref + " is a " + a.kind + " layer, not an app layer");
          std::string on = a.manifest.value("captured_on", "");
          if (!on.empty() && !base_ref.empty() && layer::parse_ref(on).first != layer::parse_ref(base_ref).first)
            warnings.push_back("app layer " + a.name + "@" + std::to_string(a.version) + " was captured on " + on +
                               ", not on " + chosen.front().name + "@" + std::to_string(chosen.front().version));
          chosen.push_back(a);
        }
      }
      json refs = json::array();
      for (const auto& row : chosen) refs.push_back(row.name + "@" + std::to_string(row.version));
      for (const auto& p : pending) cat.finish_order(p.id, "superseded", json::object());
      catalog::Order o;
      o.id = util::random_hex(8);
      o.device = device;
      o.spec = {{"type", type}, {"layers", refs}, {"remove_user_apps", remove_user_apps}};
      o.created_at = util::now_ns();
      cat.add_order(o);
      cat.add_event("order.created", device, {{"order_id", o.id}, {"spec", o.spec}, {"by", caller.name}});
      orders.push_back(o);
    }
    if (!req.params.value("dry_run", false)) tx.commit();  // a dry run rolls back
    reply.result = {{"orders", orders}, {"warnings", warnings}};
  };

  m_handlers["order.next"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = str_param(req.params, "device_id");
    auto d = accepted_device(device);
    auto& cat = repo().catalog();
    auto pending = cat.orders(device, "pending");
    reply.result = {{"device_id", device}, {"given", cat.given(device)}, {"inventory", d.inventory}};
    if (!pending.empty()) reply.result["order"] = pending.front();
  };

  m_handlers["order.get"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string id = str_param(req.params, "order_id");
    auto o = repo().catalog().order(id);
    if (!o) throw Error(ErrorKind::not_found, "order " + id + ": not found");
    reply.result = *o;
  };

  m_handlers["order.report"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string id = str_param(req.params, "order_id");
    std::string state = str_param(req.params, "state");
    if (state != "done" && state != "failed") throw Error(ErrorKind::usage, "state '" + state + "': expected done or failed");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    auto o = cat.order(id);
    if (!o) throw Error(ErrorKind::not_found, "order " + id + ": not found");
    if (o->device != str_param(req.params, "device_id"))
      throw Error(ErrorKind::permission, "order " + id + " belongs to another device");
    if (o->state != "pending") throw Error(ErrorKind::precondition, "order " + id + " is " + o->state + ", not pending");
    json result = req.params.value("result", json::object());
    cat.finish_order(id, state, result);
    std::string type = o->spec.value("type", "assign");
    if (state == "done" && type != "snapshot")
      cat.set_given(o->device, {{"layers", o->spec["layers"]}, {"id_map", result.value("id_map", json::object())},
                                {"order_id", id}});
    cat.add_event("order." + state, o->device,
                  {{"order_id", id},
                   {"transaction", type == "assign" ? "layer_update" : type},
                   {"bytes_moved", result.value("wire_bytes", uint64_t(0))},
                   {"unique_bytes", result.value("apply", json::object()).value("bytes_fetched", uint64_t(0))},
                   {"spec", o->spec},
                   {"result", result}});
    if (state == "done" && o->spec.value("type", "") == "provision") {
      int64_t cvd = cat.start_cvd(o->device, "provision order " + id);
      cat.add_event("cvd.started", o->device, {{"cvd", cvd}, {"order_id", id}});
    }
    tx.commit();
    reply.result = *cat.order(id);
  };

  m_handlers["device.status"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = str_param(req.params, "device_id");
    auto& cat = repo().catalog();
    auto d = cat.device(device);
    if (!d) throw Error(ErrorKind::not_found, "device " + device + ": not registered");
    auto orders = cat.orders(device, "");
    json pending = json::array(), last = nullptr;
    for (const auto& o : orders) {
      if (o.state == "pending") pending.push_back(o);
      if (o.state == "done" || o.state == "failed") last = o;
    }
    auto cvds = cat.cvds(device);
    reply.result = {{"device", *d},   {"given", cat.given(device)}, {"pending", pending},
                    {"last", last},   {"cvd", cvds.empty() ? 1 : cvds.back().first}};
  };
}

}  // namespace mirage::server

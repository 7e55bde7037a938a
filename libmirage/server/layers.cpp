// Layers and captures: a captured layer version is committed (its tree checked like a
// snapshot's), listed and read (a device reads only the layers its orders name).
#include <algorithm>

#include "libmirage/layer/image.hpp"
#include "libmirage/policy/inventory_match.hpp"
#include "libmirage/server/methods.hpp"

namespace mirage::server {

using nlohmann::json;

void to_json(json& j, const LayerInfo& r) {
  const auto& row = r.row;
  j = row;
  j["captured_on"] = row.manifest.value("captured_on", "");
  if (row.manifest.contains("match")) j["match"] = row.manifest["match"];
  j["whiteouts"] = row.manifest.contains("whiteouts") ? row.manifest["whiteouts"].size() : 0;
  if (r.with_manifest) j["manifest"] = row.manifest;
}

void to_json(json& j, const Layers& r) { j = {{"layers", r.layers}}; }

namespace {

/// True when `ref` (NAME@VERSION) is in the device's given image or one of its orders.
bool names_layer(catalog::Catalog& cat, const std::string& device, const std::string& ref) {
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

}  // namespace

LayerCommit LayerCommit::parse(const Params& p) {
  LayerCommit l;
  l.name = p.text("name");
  layer::parse_ref(l.name);  // validates the name
  if (l.name.find('@') != std::string::npos) throw Error(ErrorKind::usage, "layer name '" + l.name + "': no @VERSION here");
  l.manifest = p.value("manifest");
  l.device_id = p.text_or("device_id");
  l.stats = p.has("stats") ? p.value("stats") : json::object();
  return l;
}

LayerInfo layer_commit(Context& c, const LayerCommit& p) {
  layer::Layer l;
  try {
    layer::parse_manifest(p.manifest, l, "layer " + p.name);
  } catch (const Error& e) {
    throw Error(ErrorKind::usage, e.what());
  }
  // A driver profile matching a key no inventory has would never match: refused.
  for (const auto& [key, glob] : l.match) policy::check_inventory_key(key, "layer " + p.name + " match");
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  std::string kind(layer::kind_name(l.kind));
  if (auto prev = cat.layer(p.name, 0); prev && prev->kind != kind)
    throw Error(ErrorKind::usage, "layer " + p.name + " is a " + prev->kind + " layer, not " + kind);
  verify_closure(c.repo, l.root.subtree, std::nullopt, "layer " + p.name);
  uint32_t version = cat.add_layer(p.name, kind, l.root.subtree, p.manifest);
  cat.end_upload("capture:" + c.caller.name);
  auto row = *cat.layer(p.name, version);
  cat.add_event("layer.captured", p.device_id,
                {{"layer", row.name + "@" + std::to_string(version)}, {"kind", row.kind}, {"by", c.by()}, {"stats", p.stats}});
  tx.commit();
  return {std::move(row), false};
}

Layers layer_list(Context& c, const LayerList& p) {
  Layers r;
  for (auto& row : c.cat().layers(p.name)) r.layers.push_back({std::move(row), false});
  return r;
}

LayerInfo layer_get(Context& c, const LayerGet& p) {
  auto row = resolve_layer(c.cat(), p.ref);
  if (c.caller.role == Role::device && !names_layer(c.cat(), c.caller.name, row.name + "@" + std::to_string(row.version)))
    throw Error(ErrorKind::permission, "device " + c.caller.name + " may read only the layers its orders name");
  return {std::move(row), true};
}

void to_json(json& j, const Capture& r) { j = {{"device_id", r.device_id}, {"before", r.before}}; }

Capture capture_begin(Context& c, const DeviceId& p) {
  const std::string& device = p.device_id;
  auto d = accepted_device(c.cat(), device);
  if (!d.reference)
    throw Error(ErrorKind::precondition, "device " + device + " is not a reference device (accept it with --reference)");
  auto snaps = c.cat().snapshots(device);
  if (snaps.empty()) throw Error(ErrorKind::precondition, "device " + device + " has no snapshot yet (run mirage-centralize on it)");
  c.cat().set_capture(device, snaps.back().id);
  c.cat().add_event("capture.begin", device, {{"snapshot_id", snaps.back().id}, {"by", c.by()}});
  return {device, snaps.back().id};
}

Capture capture_get(Context& c, const DeviceId& p) {
  auto snap = c.cat().capture(p.device_id);
  if (!snap)
    throw Error(ErrorKind::precondition, "device " + p.device_id + ": no capture begun (run mirage-capture app begin)");
  return {p.device_id, *snap};
}

LayerDelete LayerDelete::parse(const Params& p) {
  std::string ref = p.text("ref");
  auto [name, version] = layer::parse_ref(ref);
  // Deleting "the newest" by accident would be too easy: the version is spelled out.
  if (version == 0) throw Error(ErrorKind::usage, "layer '" + ref + "': give NAME@VERSION (see mirage-capture list)");
  return {name, version};
}

void to_json(json& j, const LayerDeleted& r) { j = {{"layer", r.layer}, {"deleted", true}}; }

LayerDeleted layer_delete(Context& c, const LayerDelete& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  std::string ref = p.name + "@" + std::to_string(p.version);
  if (!cat.layer(p.name, p.version)) throw Error(ErrorKind::not_found, "layer " + ref + ": not found");
  std::vector<std::string> users;
  for (const auto& d : cat.devices(std::nullopt)) {
    auto given = cat.given(d.id).value("layers", json::array());
    bool uses = std::find(given.begin(), given.end(), ref) != given.end();
    for (const auto& o : cat.orders(d.id, name(OrderState::pending))) {
      auto layers = o.spec.value("layers", json::array());
      uses = uses || std::find(layers.begin(), layers.end(), ref) != layers.end();
    }
    if (uses) users.push_back(d.id);
  }
  if (!users.empty()) {
    std::string list;
    for (size_t i = 0; i < users.size() && i < 5; ++i) list += (i ? ", " : "") + users[i];
    if (users.size() > 5) list += " and " + std::to_string(users.size() - 5) + " more";
    throw Error(ErrorKind::precondition, "layer " + ref + " is assigned to " + std::to_string(users.size()) +
                                             " devices (" + list + "); assign them another version first");
  }
  cat.delete_layer(p.name, p.version);
  cat.add_event("layer.deleted", "", {{"layer", ref}, {"by", c.by()}});
  tx.commit();
  return {ref};
}

}  // namespace mirage::server

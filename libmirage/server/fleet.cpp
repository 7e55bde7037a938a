// The fleet side of the handler table: policies and their assignment, collections and
// device tags, storage volumes, GC, and snapshots on request.
#include <fnmatch.h>

#include <algorithm>
#include <set>

#include "libmirage/policy/inventory_match.hpp"
#include "libmirage/server/housekeeping.hpp"
#include "libmirage/server/params.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/store/volume.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

bool glob(const std::string& pattern, const std::string& text) { return fnmatch(pattern.c_str(), text.c_str(), 0) == 0; }

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 100) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

const char* const k_match_keys[] = {"hostname", "os", "os_version", "tag", "inventory"};

/// Validates a dynamic collection's match: {"hostname": GLOB, "os": GLOB, "os_version":
/// GLOB, "tag": TAG, "inventory": {KEY: GLOB, ...}}; every condition given must hold.
json checked_match(const json& match) {
  if (!match.is_object() || match.empty()) throw Error(ErrorKind::usage, "collection match: give at least one condition");
  for (const auto& [key, value] : match.items()) {
    if (std::find(std::begin(k_match_keys), std::end(k_match_keys), key) == std::end(k_match_keys))
      throw Error(ErrorKind::usage, "collection match: unknown field '" + key + "' (hostname, os, os_version, tag, inventory)");
    if (key == "inventory") {
      if (!value.is_object() || value.empty()) throw Error(ErrorKind::usage, "collection match: 'inventory' must map fields to globs");
      for (const auto& [k, v] : value.items())
        if (!v.is_string() || k.empty()) throw Error(ErrorKind::usage, "collection match: inventory field '" + k + "' needs a glob");
    } else if (!value.is_string() || value.get<std::string>().empty()) {
      throw Error(ErrorKind::usage, "collection match: '" + key + "' must be a non-empty string");
    }
  }
  return match;
}

std::string inventory_text(const json& inventory, const std::string& key) {
  auto it = inventory.find(key);
  if (it == inventory.end()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

bool matches(const json& match, const catalog::Device& d) {
  for (const auto& [key, value] : match.items()) {
    if (key == "hostname" && !glob(value, d.hostname)) return false;
    if (key == "os" && !glob(value, inventory_text(d.inventory, "os_id"))) return false;
    if (key == "os_version" && !glob(value, inventory_text(d.inventory, "os_version"))) return false;
    if (key == "tag" && std::find(d.tags.begin(), d.tags.end(), value.get<std::string>()) == d.tags.end()) return false;
    if (key == "inventory")
      for (const auto& [k, v] : value.items())
        if (!policy::inventory_matches(d.inventory, k, v.get<std::string>())) return false;
  }
  return true;
}

std::vector<std::string> members(catalog::Catalog& cat, const std::string& name) {
  auto c = cat.collection(name);
  if (!c) throw Error(ErrorKind::not_found, "collection " + name + ": not found (see mirage collection list)");
  std::vector<std::string> out;
  if (c->first == "static") {
    for (const auto& d : c->second.value("devices", json::array())) out.push_back(d.get<std::string>());
    return out;
  }
  for (const auto& d : cat.devices(catalog::DeviceState::accepted))
    if (matches(c->second.at("match"), d)) out.push_back(d.id);
  return out;
}

/// What the volume at `url` says it can still hold; 0 when it cannot tell.
uint64_t free_bytes(const std::string& url) {
  try {
    return store::open_volume(url)->usage().free_bytes;
  } catch (const Error&) {
    return 0;
  }
}

}  // namespace

std::vector<std::string> Service::target_devices(const json& params) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& d : str_list(params, "device_ids"))
    if (seen.insert(d).second) out.push_back(d);
  for (const auto& c : str_list(params, "collections"))
    for (const auto& d : members(repo().catalog(), c))
      if (seen.insert(d).second) out.push_back(d);
  if (out.empty()) {
    if (params.contains("collections")) throw Error(ErrorKind::precondition, "the collections given have no members");
    throw Error(ErrorKind::usage, "give at least one device (--device) or collection (--collection)");
  }
  return out;
}

void Service::register_fleet_handlers() {
  m_handlers["policy.list"] = [this](proto::Request&, proto::Reply& reply, const Caller&) {
    auto& cat = repo().catalog();
    std::map<std::string, uint64_t> users;
    for (const auto& d : cat.devices(std::nullopt)) users[d.policy]++;
    json list = json::array();
    auto names = cat.policies();
    if (std::find(names.begin(), names.end(), "default") == names.end()) names.insert(names.begin(), "default");
    for (const auto& n : names) list.push_back({{"name", n}, {"devices", users[n]}, {"stored", n != "default" || cat.policy(n)}});
    reply.result = {{"policies", list}};
  };

  m_handlers["policy.assign"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    auto& cat = repo().catalog();
    if (name != "default" && !cat.policy(name)) throw Error(ErrorKind::not_found, "policy " + name + ": not found");
    catalog::Transaction tx(cat);
    auto devices = target_devices(req.params);
    for (const auto& id : devices) {
      if (!cat.device(id)) throw Error(ErrorKind::not_found, "device " + id + ": not registered");
      cat.set_device_policy(id, name);
    }
    cat.add_event("policy.assigned", "", {{"name", name}, {"devices", devices}, {"by", caller.name}});
    tx.commit();
    reply.result = {{"name", name}, {"devices", devices}};
  };

  m_handlers["collection.set"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    if (!valid_name(name)) throw Error(ErrorKind::usage, "collection name '" + name + "': use letters, digits and - _ .");
    json spec;
    std::string kind;
    if (req.params.contains("match")) {
      if (req.params.contains("device_ids")) throw Error(ErrorKind::usage, "a collection is static (devices) or dynamic (match), not both");
      kind = "dynamic";
      spec = {{"match", checked_match(req.params["match"])}};
    } else {
      kind = "static";
      auto devices = str_list(req.params, "device_ids");
      if (devices.empty()) throw Error(ErrorKind::usage, "give devices (static) or match conditions (dynamic)");
      for (const auto& d : devices)
        if (!repo().catalog().device(d)) throw Error(ErrorKind::not_found, "device " + d + ": not registered");
      spec = {{"devices", devices}};
    }
    repo().catalog().set_collection(name, kind, spec);
    repo().catalog().add_event("collection.set", "", {{"name", name}, {"kind", kind}, {"spec", spec}, {"by", caller.name}});
    reply.result = {{"name", name}, {"kind", kind}, {"spec", spec}, {"members", members(repo().catalog(), name)}};
  };

  m_handlers["collection.get"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string name = str_param(req.params, "name");
    auto members_now = members(repo().catalog(), name);
    auto c = *repo().catalog().collection(name);
    reply.result = {{"name", name}, {"kind", c.first}, {"spec", c.second}, {"members", members_now}};
  };

  m_handlers["collection.list"] = [this](proto::Request&, proto::Reply& reply, const Caller&) {
    json list = json::array();
    for (const auto& n : repo().catalog().collections()) {
      auto c = *repo().catalog().collection(n);
      list.push_back({{"name", n}, {"kind", c.first}, {"members", members(repo().catalog(), n).size()}});
    }
    reply.result = {{"collections", list}};
  };

  m_handlers["collection.delete"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    if (!repo().catalog().delete_collection(name)) throw Error(ErrorKind::not_found, "collection " + name + ": not found");
    repo().catalog().add_event("collection.deleted", "", {{"name", name}, {"by", caller.name}});
    reply.result = {{"name", name}, {"deleted", true}};
  };

  m_handlers["device.tag"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string id = str_param(req.params, "device_id");
    auto& cat = repo().catalog();
    auto d = cat.device(id);
    if (!d) throw Error(ErrorKind::not_found, "device " + id + ": not registered");
    auto tags = d->tags;
    for (const auto& t : str_list(req.params, "add")) {
      if (!valid_name(t)) throw Error(ErrorKind::usage, "tag '" + t + "': use letters, digits and - _ .");
      if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
    }
    for (const auto& t : str_list(req.params, "remove")) std::erase(tags, t);
    cat.set_device_tags(id, tags);
    cat.add_event("device.tagged", id, {{"tags", tags}, {"by", caller.name}});
    reply.result = *cat.device(id);
  };

  m_handlers["volume.list"] = [this](proto::Request&, proto::Reply& reply, const Caller&) {
    auto& cat = repo().catalog();
    std::map<int64_t, std::pair<uint64_t, uint64_t>> use;  // volume -> (packs, bytes)
    for (const auto& p : cat.packs()) {
      use[p.volume].first++;
      use[p.volume].second += p.size;
    }
    std::map<int64_t, uint64_t> devices;
    for (const auto& d : cat.devices(std::nullopt)) devices[d.volume]++;
    json list = json::array();
    for (const auto& v : cat.volumes())
      list.push_back({{"volume_id", v.id},
                      {"path", v.path},
                      {"read_only", v.read_only},
                      {"free_bytes", free_bytes(v.path)},
                      {"packs", use[v.id].first},
                      {"pack_bytes", use[v.id].second},
                      {"devices", devices[v.id]}});
    reply.result = {{"volumes", list}};
  };

  m_handlers["volume.add"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string path = str_param(req.params, "path");
    if (path[0] != '/') throw Error(ErrorKind::usage, "volume path '" + path + "': give an absolute path");
    auto& cat = repo().catalog();
    for (const auto& v : cat.volumes())
      if (v.path == path) throw Error(ErrorKind::precondition, "volume " + path + " is already volume " + std::to_string(v.id));
    store::open_volume(path)->init();
    int64_t id = cat.add_volume(path);
    cat.add_event("volume.added", "", {{"volume_id", id}, {"path", path}, {"by", caller.name}});
    reply.result = {{"volume_id", id}, {"path", path}, {"read_only", false}, {"free_bytes", free_bytes(path)}};
  };

  m_handlers["volume.set"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    int64_t id = static_cast<int64_t>(num_param(req.params, "volume_id", -1, 0, 1e12));
    if (!req.params.contains("read_only")) throw Error(ErrorKind::usage, "give read_only");
    bool ro = bool_param(req.params, "read_only");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    auto vols = cat.volumes();
    auto it = std::find_if(vols.begin(), vols.end(), [&](const catalog::Volume& v) { return v.id == id; });
    if (it == vols.end()) throw Error(ErrorKind::not_found, "volume " + std::to_string(id) + ": not found");
    if (ro && std::none_of(vols.begin(), vols.end(), [&](const catalog::Volume& v) { return v.id != id && !v.read_only; }))
      throw Error(ErrorKind::precondition, "volume " + std::to_string(id) + " is the last writable volume");
    cat.set_volume_read_only(id, ro);
    cat.add_event("volume.set", "", {{"volume_id", id}, {"read_only", ro}, {"by", caller.name}});
    tx.commit();
    reply.result = {{"volume_id", id}, {"path", it->path}, {"read_only", ro}};
  };

  m_handlers["gc.run"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    // Its own connection and no lock: syncs go on meanwhile.
    reply.result = run_gc(gc_options(req.params));
  };

  m_handlers["snapshot.request"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    json orders = json::array();
    for (const auto& device : target_devices(req.params)) {
      accepted_device(device);
      catalog::Order o;
      o.id = util::random_hex(8);
      o.device = device;
      o.spec = {{"type", "snapshot"}, {"reason", req.params.value("reason", "requested")}};
      o.created_at = util::now_ns();
      cat.add_order(o);
      cat.add_event("order.created", device, {{"order_id", o.id}, {"spec", o.spec}, {"by", caller.name}});
      orders.push_back(o);
    }
    tx.commit();
    reply.result = {{"orders", orders}};
  };

  // Clients report what they did without the server seeing it whole (a restore reads
  // chunks; only the client knows it restored a snapshot): one transaction log entry.
  m_handlers["events.report"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string type = str_param(req.params, "type");
    if (type != "restore") throw Error(ErrorKind::usage, "event type '" + type + "': only restore is reported by clients");
    std::string device = str_param(req.params, "device_id");
    if (!repo().catalog().device(device)) throw Error(ErrorKind::not_found, "device " + device + ": not registered");
    json detail = {{"transaction", "restore"},
                   {"snapshot_id", req.params.value("snapshot_id", "")},
                   {"bytes_moved", static_cast<uint64_t>(num_param(req.params, "bytes_moved", 0, 0, 1e18))},
                   {"unique_bytes", static_cast<uint64_t>(num_param(req.params, "unique_bytes", 0, 0, 1e18))},
                   {"files", static_cast<uint64_t>(num_param(req.params, "files", 0, 0, 1e18))},
                   {"by", caller.name.empty() ? "local" : caller.name}};
    repo().catalog().add_event("restore.done", device, detail);
    reply.result = detail;
  };

  m_handlers["order.pending"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = str_param(req.params, "device_id");
    reply.result = {{"device_id", device}, {"pending", repo().catalog().orders(device, "pending").size()}};
  };
}

}  // namespace mirage::server

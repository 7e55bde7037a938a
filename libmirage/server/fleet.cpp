// The fleet methods: upload policies and their assignment, collections, storage
// volumes, the event log, GC and check.
#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "libmirage/policy/inventory_match.hpp"
#include "libmirage/server/housekeeping.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/store/stats.hpp"
#include "libmirage/store/volume.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

bool glob(const std::string& pattern, const std::string& text) { return fnmatch(pattern.c_str(), text.c_str(), 0) == 0; }

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
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string() || k.empty()) throw Error(ErrorKind::usage, "collection match: inventory field '" + k + "' needs a glob");
        policy::check_inventory_key(k, "collection match");
      }
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

}  // namespace

std::vector<std::string> collection_members(catalog::Catalog& cat, const std::string& name) {
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

namespace {

/// What the volume at `url` says it can still hold; 0 when it cannot tell.
uint64_t free_bytes(const std::string& url) {
  try {
    return store::open_volume(url)->usage().free_bytes;
  } catch (const Error&) {
    return 0;
  }
}

}  // namespace

std::vector<std::string> target_devices(catalog::Catalog& cat, const Targets& targets) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& d : targets.device_ids)
    if (seen.insert(d).second) out.push_back(d);
  for (const auto& c : targets.collections)
    for (const auto& d : collection_members(cat, c))
      if (seen.insert(d).second) out.push_back(d);
  if (out.empty()) {
    if (targets.collections_given) throw Error(ErrorKind::precondition, "the collections given have no members");
    throw Error(ErrorKind::usage, "give at least one device (--device) or collection (--collection)");
  }
  return out;
}

void to_json(json& j, const PolicyReply& r) { j = {{"name", r.name}, {"policy", r.policy}}; }

PolicyReply policy_get(Context& c, const PolicyGet& p) {
  std::string name = p.device_id ? accepted_device(c.cat(), *p.device_id).policy : p.name;
  auto doc = c.cat().policy(name);
  if (!doc && name != "default") throw Error(ErrorKind::not_found, "policy " + name + ": not found");
  return {name, doc ? policy::policy_document(*doc) : policy::default_policy_document()};
}

PolicySet PolicySet::parse(const Params& p) {
  PolicySet s;
  s.name = p.text("name");
  const json& doc = p.value("policy");
  if (!valid_device_id(s.name)) throw Error(ErrorKind::usage, "policy name '" + s.name + "': use letters, digits and - _ . :");
  s.policy = policy::policy_document(doc);  // validates, fills defaults
  return s;
}

PolicyReply policy_set(Context& c, const PolicySet& p) {
  c.cat().set_policy(p.name, p.policy);
  c.cat().add_event("policy.set", "", {{"name", p.name}, {"by", c.by()}});
  return {p.name, p.policy};
}

void to_json(json& j, const Policies& r) {
  json list = json::array();
  for (const auto& p : r.policies) list.push_back({{"name", p.name}, {"devices", p.devices}, {"stored", p.stored}});
  j = {{"policies", list}};
}

Policies policy_list(Context& c, const NoParams&) {
  auto& cat = c.cat();
  std::map<std::string, uint64_t> users;
  for (const auto& d : cat.devices(std::nullopt)) users[d.policy]++;
  Policies r;
  auto names = cat.policies();
  if (std::find(names.begin(), names.end(), "default") == names.end()) names.insert(names.begin(), "default");
  for (const auto& n : names) r.policies.push_back({n, users[n], n != "default" || cat.policy(n).has_value()});
  return r;
}

void to_json(json& j, const PolicyAssigned& r) { j = {{"name", r.name}, {"devices", r.devices}}; }

PolicyAssigned policy_assign(Context& c, const PolicyAssign& p) {
  auto& cat = c.cat();
  if (p.name != "default" && !cat.policy(p.name)) throw Error(ErrorKind::not_found, "policy " + p.name + ": not found");
  catalog::Transaction tx(cat);
  auto devices = target_devices(cat, p.targets);
  for (const auto& id : devices) {
    registered_device(cat, id);
    cat.set_device_policy(id, p.name);
  }
  cat.add_event("policy.assigned", "", {{"name", p.name}, {"devices", devices}, {"by", c.by()}});
  tx.commit();
  return {p.name, devices};
}

CollectionSet CollectionSet::parse(const Params& p) {
  CollectionSet s;
  s.name = p.text("name");
  s.replace = p.flag("replace");
  if (!valid_name(s.name)) throw Error(ErrorKind::usage, "collection name '" + s.name + "': use letters, digits and - _ .");
  if (p.has("match")) {
    if (p.has("device_ids")) throw Error(ErrorKind::usage, "a collection is static (devices) or dynamic (match), not both");
    s.match = checked_match(p.value("match"));
  } else {
    s.device_ids = p.texts("device_ids");
    if (s.device_ids.empty()) throw Error(ErrorKind::usage, "give devices (static) or match conditions (dynamic)");
  }
  return s;
}

void to_json(json& j, const CollectionReply& r) {
  j = {{"name", r.name}, {"kind", r.kind}, {"spec", r.spec}, {"members", r.members}};
}

CollectionReply collection_set(Context& c, const CollectionSet& p) {
  auto& cat = c.cat();
  if (!p.replace && cat.collection(p.name))
    throw Error(ErrorKind::precondition, "collection " + p.name + " exists; --replace replaces it");
  std::string kind = p.match ? "dynamic" : "static";
  json spec;
  if (p.match) {
    spec = {{"match", *p.match}};
  } else {
    for (const auto& d : p.device_ids) registered_device(cat, d);
    spec = {{"devices", p.device_ids}};
  }
  cat.set_collection(p.name, kind, spec);
  cat.add_event("collection.set", "", {{"name", p.name}, {"kind", kind}, {"spec", spec}, {"by", c.by()}});
  return {p.name, kind, spec, collection_members(cat, p.name)};
}

CollectionReply collection_get(Context& c, const CollectionName& p) {
  auto members_now = collection_members(c.cat(), p.name);
  auto coll = *c.cat().collection(p.name);
  return {p.name, coll.first, coll.second, members_now};
}

void to_json(json& j, const Collections& r) {
  json list = json::array();
  for (const auto& s : r.collections) list.push_back({{"name", s.name}, {"kind", s.kind}, {"members", s.members}});
  j = {{"collections", list}};
}

Collections collection_list(Context& c, const NoParams&) {
  Collections r;
  for (const auto& n : c.cat().collections())
    r.collections.push_back({n, c.cat().collection(n)->first, collection_members(c.cat(), n).size()});
  return r;
}

void to_json(json& j, const CollectionDeleted& r) { j = {{"name", r.name}, {"deleted", true}}; }

CollectionDeleted collection_delete(Context& c, const CollectionName& p) {
  if (!c.cat().delete_collection(p.name)) throw Error(ErrorKind::not_found, "collection " + p.name + ": not found");
  c.cat().add_event("collection.deleted", "", {{"name", p.name}, {"by", c.by()}});
  return {p.name};
}

void to_json(json& j, const Volumes& r) {
  json list = json::array();
  for (const auto& v : r.volumes)
    list.push_back({{"volume_id", v.volume_id},
                    {"path", v.path},
                    {"read_only", v.read_only},
                    {"free_bytes", v.free_bytes},
                    {"packs", v.packs},
                    {"pack_bytes", v.pack_bytes},
                    {"devices", v.devices}});
  j = {{"volumes", list}};
}

Volumes volume_list(Context& c, const NoParams&) {
  auto& cat = c.cat();
  std::map<int64_t, std::pair<uint64_t, uint64_t>> use;  // volume -> (packs, bytes)
  for (const auto& p : cat.packs()) {
    use[p.volume].first++;
    use[p.volume].second += p.size;
  }
  std::map<int64_t, uint64_t> devices;
  for (const auto& d : cat.devices(std::nullopt)) devices[d.volume]++;
  Volumes r;
  for (const auto& v : c.repo.volumes())
    r.volumes.push_back({v.id, v.path, v.read_only, free_bytes(v.path), use[v.id].first, use[v.id].second, devices[v.id]});
  return r;
}

VolumeAdd VolumeAdd::parse(const Params& p) {
  VolumeAdd v{p.text("path"), p.flag("create")};
  if (v.path[0] != '/') throw Error(ErrorKind::usage, "volume path '" + v.path + "': give an absolute path");
  return v;
}

void to_json(json& j, const VolumeAdded& r) {
  j = {{"volume_id", r.volume_id}, {"path", r.path}, {"read_only", false}, {"free_bytes", r.free_bytes}};
}

VolumeAdded volume_add(Context& c, const VolumeAdd& p) {
  auto& cat = c.cat();
  if (auto id = c.repo.volume_at(p.path))
    throw Error(ErrorKind::precondition, "volume " + p.path + " is already volume " + std::to_string(*id));
  std::error_code ec;
  if (!p.create && !std::filesystem::is_directory(p.path, ec))
    throw Error(ErrorKind::not_found, "volume " + p.path + ": no such directory (--create makes it)");
  store::open_volume(p.path)->init();
  int64_t id = cat.add_volume(p.path);
  cat.add_event("volume.added", "", {{"volume_id", id}, {"path", p.path}, {"by", c.by()}});
  return {id, p.path, free_bytes(p.path)};
}

VolumeSet VolumeSet::parse(const Params& p) {
  VolumeSet v;
  v.volume_id = static_cast<int64_t>(p.number("volume_id", -1, 0, 1e12));
  if (!p.has("read_only")) throw Error(ErrorKind::usage, "give read_only");
  v.read_only = p.flag("read_only");
  return v;
}

void to_json(json& j, const VolumeState& r) {
  j = {{"volume_id", r.volume_id}, {"path", r.path}, {"read_only", r.read_only}};
}

VolumeState volume_set(Context& c, const VolumeSet& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto vols = c.repo.volumes();
  auto it = std::find_if(vols.begin(), vols.end(), [&](const catalog::Volume& v) { return v.id == p.volume_id; });
  std::string id = std::to_string(p.volume_id);
  if (it == vols.end()) throw Error(ErrorKind::not_found, "volume " + id + ": not found");
  if (p.read_only &&
      std::none_of(vols.begin(), vols.end(), [&](const catalog::Volume& v) { return v.id != p.volume_id && !v.read_only; }))
    throw Error(ErrorKind::precondition, "volume " + id + " is the last writable volume");
  cat.set_volume_read_only(p.volume_id, p.read_only);
  cat.add_event("volume.set", "", {{"volume_id", p.volume_id}, {"read_only", p.read_only}, {"by", c.by()}});
  tx.commit();
  return {p.volume_id, it->path, p.read_only};
}

GcRun GcRun::parse(const Params& p) {
  GcRun g;
  g.options.dry_run = p.flag("dry_run");
  g.options.grace_ns = static_cast<int64_t>(p.number("grace_seconds", 600, 0, 365.0 * 86400) * 1e9);
  // At least a minute: an upload's last touch may be a second old (catalog.hpp, touch_upload).
  g.options.session_timeout_ns = static_cast<int64_t>(p.number("session_timeout_seconds", 3600, 60, 365.0 * 86400) * 1e9);
  g.options.repack_below = p.number("repack_below", g.options.repack_below, 0, 1);
  g.options.max_repack_bytes =
      static_cast<uint64_t>(p.number("max_repack_bytes", double(g.options.max_repack_bytes), 0, 1e15));
  return g;
}

GcRan gc_run(Context& c, const GcRun& p) {
  // Its own connection and no lock: syncs go on meanwhile.
  return c.service.run_gc(p.options);
}

EventsList EventsList::parse(const Params& p) {
  EventsList e;
  e.device_id = p.text_or("device_id");
  e.since = 0;
  if (p.has("since")) {
    auto t = util::parse_time_lower(p.text("since"));
    if (!t) throw Error(ErrorKind::usage, "since: expected a date such as 2026-11-25 or 2026-11-25T10:00:00Z");
    e.since = *t;
  }
  e.after_id = p.integer("after_id", 0, INT64_MIN, INT64_MAX);
  e.type = p.text_or("type");
  return e;
}

void to_json(json& j, const Events& r) { j = {{"events", r.events}}; }

Events events_list(Context& c, const EventsList& p) { return {c.cat().events(p.device_id, p.since, p.after_id, p.type)}; }

namespace {

OldRootRemoved old_root_removed_of(const Params& p) {
  OldRootRemoved r;
  r.migration_id = p.text("migration_id");
  if (r.migration_id.empty() || r.migration_id.size() > 64 ||
      r.migration_id.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw Error(ErrorKind::usage, "migration_id '" + printable(r.migration_id, 100) + "': a migration id (hex)");
  r.reason = p.text("reason");
  if (r.reason != "retention" && r.reason != "rollback")
    throw Error(ErrorKind::usage, "reason '" + printable(r.reason, 100) + "': retention or rollback");
  r.bytes = static_cast<uint64_t>(p.number("bytes", 0, 0, 1e18));
  r.bytes_freed = static_cast<uint64_t>(p.number("bytes_freed", 0, 0, 1e18));
  r.files = static_cast<uint64_t>(p.number("files", 0, 0, 1e15));
  return r;
}

}  // namespace

EventsReport EventsReport::parse(const Params& p) {
  EventsReport e;
  e.type = p.text("type");
  if (e.type == "old_root_removed") {
    e.device_id = p.text("device_id");
    e.old_root = old_root_removed_of(p);
    return e;
  }
  if (e.type != "restore")
    throw Error(ErrorKind::usage,
                "event type '" + printable(e.type, 100) + "': only restore and old_root_removed are reported by clients");
  e.device_id = p.text("device_id");
  e.snapshot_id = p.text_or("snapshot_id");
  e.bytes_moved = static_cast<uint64_t>(p.number("bytes_moved", 0, 0, 1e18));
  e.unique_bytes = static_cast<uint64_t>(p.number("unique_bytes", 0, 0, 1e18));
  e.files = static_cast<uint64_t>(p.number("files", 0, 0, 1e18));
  e.paths = p.texts("paths");
  if (e.paths.size() > k_max_report_paths)
    throw Error(ErrorKind::usage, "paths: at most " + std::to_string(k_max_report_paths) + " (give paths_total for the rest)");
  for (const auto& path : e.paths)
    if (path.size() > k_max_report_path)
      throw Error(ErrorKind::usage, "paths: at most " + std::to_string(k_max_report_path) + " bytes each");
  e.paths_total = static_cast<uint64_t>(p.number("paths_total", double(e.paths.size()), double(e.paths.size()), 1e15));
  e.to = p.text_or("to");
  if (e.to.size() > k_max_report_path)
    throw Error(ErrorKind::usage, "to: at most " + std::to_string(k_max_report_path) + " bytes");
  e.host = p.text_or("host");
  if (e.host.size() > 253 || e.host != printable(e.host, 253))
    throw Error(ErrorKind::usage, "host: at most 253 printable characters");
  e.stage = p.text_or("stage", "done");
  if (e.stage != "done" && e.stage != "usable")
    throw Error(ErrorKind::usage, "stage '" + printable(e.stage, 100) + "': done or usable");
  e.files_left = static_cast<uint64_t>(p.number("files_left", 0, 0, 1e18));
  e.bytes_left = static_cast<uint64_t>(p.number("bytes_left", 0, 0, 1e18));
  return e;
}

void to_json(json& j, const RestoreDone& r) {
  j = {{"transaction", "restore"}, {"snapshot_id", r.snapshot_id}, {"bytes_moved", r.bytes_moved},
       {"unique_bytes", r.unique_bytes}, {"files", r.files}, {"by", r.by}, {"paths", r.paths},
       {"paths_total", r.paths_total}, {"to", r.to}, {"host", r.host}};
  if (r.stage == "usable") {
    j["files_left"] = r.files_left;
    j["bytes_left"] = r.bytes_left;
  }
}

// Clients report what they did without the server seeing it whole (a restore reads
// chunks; only the client knows it restored a snapshot): one transaction log entry.
json events_report(Context& c, const EventsReport& p) {
  registered_device(c.cat(), p.device_id);
  if (p.type == "old_root_removed") {
    const auto& o = p.old_root;
    json r = {{"transaction", "old_root_removed"}, {"migration_id", o.migration_id}, {"reason", o.reason},
              {"bytes", o.bytes}, {"bytes_freed", o.bytes_freed}, {"files", o.files}, {"bytes_moved", 0},
              {"by", c.by().empty() ? "local" : c.by()}};
    // Once per removal: an endpoint killed after reporting it reports it again.
    const std::string type = "migrate.old_root_removed";
    auto seen = c.cat().events(p.device_id, 0, 0, type);
    bool again = std::any_of(seen.begin(), seen.end(), [&](const json& e) {
      json detail = e.value("detail", json::object());
      return detail.is_object() && detail.value("migration_id", "") == o.migration_id;
    });
    if (!again) c.cat().add_event(type, p.device_id, r);
    r["recorded"] = !again;
    return r;
  }
  RestoreDone r{p.snapshot_id, p.bytes_moved, p.unique_bytes, p.files, c.by().empty() ? "local" : c.by(),
                p.paths, p.paths_total, p.to, p.host, p.stage, p.files_left, p.bytes_left};
  c.cat().add_event("restore." + p.stage, p.device_id, r);
  return json(r);
}

void to_json(json& j, const StoreUsage& r) {
  json devices = json::array();
  for (const auto& [id, usage] : r.devices) {
    json d = usage;
    d["device_id"] = id;
    devices.push_back(std::move(d));
  }
  j = {{"devices", std::move(devices)}};
  if (r.store) {
    j["store"] = *r.store;
    j["store"]["devices"] = r.devices.size();
    j["index"] = {{"chunks", r.index_chunks}, {"pack_bytes", r.index_pack_bytes}};
  }
}

StoreUsage store_stats(Context& c, const StoreStats& p) {
  auto& cat = c.cat();
  std::vector<std::string> ids;
  if (p.device_id) {
    ids.push_back(registered_device(cat, *p.device_id).id);
  } else {
    for (const auto& d : cat.devices(std::nullopt)) ids.push_back(d.id);
  }
  auto counts = cat.counts(0);  // outside the transaction, as counts() asks
  catalog::Transaction tx(cat, catalog::Transaction::Mode::read);  // one state, one lock for the lookups
  store::ChunkSizes all;
  StoreUsage out;
  std::vector<store::UsageStats> parts;
  for (const auto& id : ids) {
    parts.push_back(store::usage(c.repo, cat.snapshots(id), all));
    out.devices.emplace_back(id, parts.back());
  }
  if (!p.device_id) {
    out.store = store::total(parts, all);
    out.index_chunks = counts.chunks;
    out.index_pack_bytes = counts.pack_bytes;
  }
  return out;
}

void to_json(json& j, const Checked& r) {
  j = r.check;
  if (r.repair) j["repair"] = *r.repair;
}

Checked check(Context& c, const Check& p) {
  // Progress goes to the log sink: over stdio that is the user's terminal.
  Checked out;
  if (p.repair) {
    out.repair = c.repo.repair([](uint64_t done, uint64_t total) {
      util::log(util::LogLevel::progress, "repairing: " + std::to_string(done) + " of " + std::to_string(total) + " packs");
    });
    c.cat().add_event("check.repair", "", *out.repair);
  }
  out.check = c.repo.check(p.read_data, [](uint64_t done, uint64_t total) {
    util::log(util::LogLevel::progress, "checking: " + std::to_string(done) + " of " + std::to_string(total) + " chunks");
  });
  util::log(util::LogLevel::progress, "");
  return out;
}

}  // namespace mirage::server

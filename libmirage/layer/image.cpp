#include "libmirage/layer/image.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <unordered_map>

#include "libmirage/policy/inventory_match.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::layer {

using nlohmann::json;

namespace {

using tree::child_path;
using tree::parent_path;

/// Removes `path` and everything below it.
void erase_tree(Flat& flat, std::map<std::string, std::string>* owner, const std::string& path) {
  auto it = flat.find(path);
  if (it != flat.end()) it = flat.erase(it);
  // Children sort right after "path/" (and before any sibling such as "path0").
  std::string prefix = path == "/" ? "/" : path + "/";
  it = flat.lower_bound(prefix);
  while (it != flat.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
    if (owner) owner->erase(it->first);
    it = flat.erase(it);
  }
  if (owner) owner->erase(path);
}

void check_rel_path(const std::string& p, const std::string& what) {
  if (p.empty() || p[0] != '/') throw Error(ErrorKind::integrity, what + ": path '" + p + "' is not absolute");
  try {
    tree::split_path(p);
  } catch (const Error& e) {
    throw Error(ErrorKind::integrity, what + ": " + e.what());
  }
}

std::vector<std::string> path_list(const json& j, const char* key, const std::string& what) {
  std::vector<std::string> out;
  if (!j.contains(key)) return out;
  if (!j[key].is_array()) throw Error(ErrorKind::integrity, what + ": '" + key + "' must be an array");
  for (const auto& p : j[key]) {
    if (!p.is_string()) throw Error(ErrorKind::integrity, what + ": '" + key + "' holds a non-string");
    check_rel_path(p.get<std::string>(), what);
    out.push_back(p.get<std::string>());
  }
  return out;
}

}  // namespace

Flat flatten(materialize::ObjectSource& source, const tree::Entry& root) {
  Flat flat;
  flat["/"] = root;
  std::vector<std::pair<std::string, Digest>> level{{"/", root.subtree}};
  while (!level.empty()) {
    std::vector<Digest> ids;
    for (const auto& [path, id] : level) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    auto trees = source.trees(ids);
    std::vector<std::pair<std::string, Digest>> next;
    for (const auto& [path, id] : level) {
      auto it = trees.find(id);
      if (it == trees.end()) throw Error(ErrorKind::integrity, "tree " + id.hex() + " of " + path + " is missing from the store");
      for (const auto& e : it->second.entries) {
        std::string p = child_path(path, e.name);
        if (e.kind == tree::Kind::dir) next.emplace_back(p, e.subtree);
        flat.emplace(std::move(p), e);
      }
    }
    level = std::move(next);
  }
  return flat;
}

std::string read_content(materialize::ObjectSource& source, const tree::Entry& file, const std::string& path) {
  std::vector<Digest> ids;
  for (const auto& c : file.chunks) ids.push_back(c.id);
  auto blob = source.records(ids);
  std::unordered_map<Digest, store::Record, util::DigestHash> recs;
  store::RecordReader reader(blob, path);
  while (auto rec = reader.next()) recs.emplace(rec->id, *rec);
  std::string out;
  out.reserve(file.size);
  for (const auto& c : file.chunks) {
    auto it = recs.find(c.id);
    if (it == recs.end()) throw Error(ErrorKind::integrity, path + ": chunk " + c.id.hex() + " is missing from the store");
    auto plain = store::open_record(it->second, path);
    out.append(plain.begin(), plain.end());
  }
  return out;
}

tree::Entry store_flat(Flat flat, scan::ChunkSink& sink) {
  if (!flat.count("/")) throw Error(ErrorKind::failed, "store_flat: no root entry");
  // Children of each directory; deepest directories first so subtree ids are known.
  std::map<std::string, std::vector<std::string>> children;
  for (const auto& [path, e] : flat) {
    if (path == "/") continue;
    std::string parent = parent_path(path);
    auto it = flat.find(parent);
    if (it == flat.end() || it->second.kind != tree::Kind::dir)
      throw Error(ErrorKind::failed, "store_flat: " + path + " has no parent directory");
    children[parent].push_back(path);
  }
  std::vector<std::string> dirs;
  for (const auto& [path, e] : flat)
    if (e.kind == tree::Kind::dir) dirs.push_back(path);
  std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) {
    auto depth = [](const std::string& s) { return s == "/" ? 0 : std::count(s.begin(), s.end(), '/'); };
    return depth(a) > depth(b);
  });
  std::vector<tree::Object> objects;
  for (const auto& dir : dirs) {
    tree::Tree t;
    for (const auto& c : children[dir]) t.entries.push_back(flat.at(c));
    auto dir_objects = tree::encode_dir(std::move(t));
    flat.at(dir).subtree = dir_objects.top.id;
    for (auto& piece : dir_objects.pieces) objects.push_back(std::move(piece));
    objects.push_back(std::move(dir_objects.top));
  }
  std::vector<Digest> ids;
  for (const auto& o : objects) ids.push_back(o.id);
  auto missing = sink.missing(ids);
  std::vector<uint8_t> batch;
  std::set<Digest> sent;
  for (size_t i = 0; i < objects.size(); ++i) {
    if (!missing[i] || !sent.insert(objects[i].id).second) continue;
    store::append_plain(batch, objects[i].id, objects[i].data, 3);
    if (batch.size() > (8u << 20)) sink.put(std::exchange(batch, {}));
  }
  if (!batch.empty()) sink.put(std::move(batch));
  return flat.at("/");
}

std::string_view kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::base: return "base";
    case LayerKind::app: return "app";
    case LayerKind::driver: return "driver";
  }
  return "?";
}

json manifest_json(const Layer& l) {
  json records = json::object();
  for (const auto& [path, delta] : l.records) records[path] = delta;
  return {{"kind", kind_name(l.kind)},
          {"root", util::to_hex(tree::encode_entry(l.root))},
          {"whiteouts", l.whiteouts},
          {"opaque", l.opaque},
          {"records", records},
          {"do_not_override", l.do_not_override},
          {"captured_on", l.captured_on},
          {"match", l.match}};
}

void parse_manifest(const json& j, Layer& l, const std::string& what) {
  if (!j.is_object()) throw Error(ErrorKind::integrity, what + ": manifest is not an object");
  std::string kind = j.value("kind", "");
  if (kind == "base")
    l.kind = LayerKind::base;
  else if (kind == "app")
    l.kind = LayerKind::app;
  else if (kind == "driver")
    l.kind = LayerKind::driver;
  else
    throw Error(ErrorKind::integrity, what + ": kind '" + kind + "' (expected base, app or driver)");
  if (!j.contains("root") || !j["root"].is_string()) throw Error(ErrorKind::integrity, what + ": no root entry");
  l.root = tree::decode_entry_hex(j["root"].get<std::string>(), what + " root");
  if (l.root.kind != tree::Kind::dir) throw Error(ErrorKind::integrity, what + ": root entry is not a directory");
  l.whiteouts = path_list(j, "whiteouts", what);
  l.opaque = path_list(j, "opaque", what);
  l.records.clear();
  if (j.contains("records")) {
    if (!j["records"].is_object()) throw Error(ErrorKind::integrity, what + ": 'records' must be an object");
    for (const auto& [path, delta] : j["records"].items()) {
      auto format = merge_format(path);
      if (!format) throw Error(ErrorKind::integrity, what + ": " + path + " has no merge driver");
      delta_from_json(*format, delta, what + " " + path);  // validates
      l.records[path] = delta;
    }
  }
  l.do_not_override.clear();
  if (j.contains("do_not_override")) {
    if (!j["do_not_override"].is_array()) throw Error(ErrorKind::integrity, what + ": 'do_not_override' must be an array");
    for (const auto& r : j["do_not_override"]) {
      if (!r.is_string()) throw Error(ErrorKind::integrity, what + ": 'do_not_override' holds a non-string");
      l.do_not_override.push_back(r.get<std::string>());
    }
  }
  l.captured_on = j.value("captured_on", "");
  l.match.clear();
  if (j.contains("match")) {
    if (!j["match"].is_object()) throw Error(ErrorKind::integrity, what + ": 'match' must be an object");
    for (const auto& [k, v] : j["match"].items()) {
      if (!v.is_string()) throw Error(ErrorKind::integrity, what + ": match rule " + k + " is not a string");
      l.match[k] = v.get<std::string>();
    }
  }
}

bool matches_inventory(const Layer& driver, const json& inventory) {
  if (driver.match.empty()) return false;
  for (const auto& [key, glob] : driver.match)
    if (!policy::inventory_matches(inventory, key, glob)) return false;
  return true;
}

std::pair<std::string, uint32_t> parse_ref(const std::string& ref) {
  auto at = ref.find('@');
  std::string name = ref.substr(0, at);
  uint32_t version = 0;
  if (at != std::string::npos) {
    std::string v = ref.substr(at + 1);
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos || std::stoul(v) == 0)
      throw Error(ErrorKind::usage, "layer '" + ref + "': the version after @ must be a positive number");
    version = static_cast<uint32_t>(std::stoul(v));
  }
  if (name.empty() || name.size() > 100 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+") != std::string::npos)
    throw Error(ErrorKind::usage, "layer name '" + name + "': use letters, digits and - _ . + (at most 100)");
  return {name, version};
}

void to_json(json& j, const Conflict& c) { j = {{"path", c.path}, {"layers", {c.first, c.second}}, {"wins", c.second}}; }

Image compose(const std::vector<std::pair<const Layer*, const Flat*>>& layers) {
  Image img;
  std::map<std::string, LayerKind> owner_kind;
  for (const auto& [layer_ptr, flat_ptr] : layers) {
    const Layer& layer = *layer_ptr;
    const Flat& flat = *flat_ptr;
    std::string ref = layer.ref();
    img.layers.push_back(ref);
    for (const auto& w : layer.whiteouts) erase_tree(img.entries, &img.owner, w);
    for (const auto& d : layer.opaque) {
      auto keep = img.entries.find(d);
      std::optional<tree::Entry> dir;
      if (keep != img.entries.end()) dir = keep->second;
      erase_tree(img.entries, &img.owner, d);
      if (dir) img.entries[d] = *dir;
    }
    for (const auto& [path, e] : flat) {
      auto it = img.entries.find(path);
      if (it != img.entries.end() && layer.kind == LayerKind::app && e.kind != tree::Kind::dir) {
        auto ow = img.owner.find(path);
        if (ow != img.owner.end() && owner_kind[ow->second] == LayerKind::app) {
          tree::Entry a = it->second, b = e;
          a.name = b.name;
          if (!(a == b)) img.conflicts.push_back({path, ow->second, ref});
        }
      }
      img.entries[path] = e;
      if (path != "/") img.owner[path] = ref;
    }
    owner_kind[ref] = layer.kind;
    for (const auto& [path, delta_json] : layer.records) {
      auto format = *merge_format(path);
      auto delta = delta_from_json(format, delta_json, ref + " " + path);
      apply_delta(img.records[path], delta);
    }
    for (const auto& r : layer.do_not_override) img.do_not_override.push_back(r);
  }
  return img;
}

void translate(Image& image, const IdMap& map) {
  if (map.empty()) return;
  for (auto& [path, e] : image.entries) {
    if (auto it = map.uid.find(e.uid); it != map.uid.end()) e.uid = it->second;
    if (auto it = map.gid.find(e.gid); it != map.gid.end()) e.gid = it->second;
  }
  RecordSet empty_users, empty_groups;
  RecordSet* passwd = &empty_users;
  RecordSet* group = &empty_groups;
  for (auto& [path, set] : image.records) {
    const MergeDriver* d = merge_driver(path);
    if (d && d->role == DriverRole::users && passwd == &empty_users) passwd = &set;
    if (d && d->role == DriverRole::groups && group == &empty_groups) group = &set;
  }
  translate_ids(*passwd, *group, map);
}

}  // namespace mirage::layer

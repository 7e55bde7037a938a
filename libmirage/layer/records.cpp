#include "libmirage/layer/records.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <unordered_map>
#include <unordered_set>

#include "libmirage/util/error.hpp"

namespace mirage::layer {

namespace {

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

std::vector<std::string_view> fields(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  for (;;) {
    size_t at = line.find(sep, pos);
    out.push_back(line.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos));
    if (at == std::string_view::npos) return out;
    pos = at + 1;
  }
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && isspace(static_cast<unsigned char>(line[pos]))) ++pos;
    size_t start = pos;
    while (pos < line.size() && !isspace(static_cast<unsigned char>(line[pos]))) ++pos;
    if (pos > start) out.push_back(line.substr(start, pos - start));
  }
  return out;
}

std::unordered_map<std::string, const Record*> by_key(const RecordSet& set) {
  std::unordered_map<std::string, const Record*> m;
  for (const auto& r : set) m.emplace(r.key, &r);
  return m;
}

std::optional<uint32_t> parse_id(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > 0xffffffffu) return std::nullopt;
  return static_cast<uint32_t>(v);
}

/// Replaces field `index` of a colon line (keeping the newline).
std::string with_field(const std::string& text, size_t index, const std::string& value) {
  std::string_view line(text);
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  auto f = fields(line, ':');
  std::string out;
  for (size_t i = 0; i < f.size(); ++i) {
    if (i) out += ':';
    out += i == index ? std::string_view(value) : f[i];
  }
  return out + "\n";
}

std::optional<uint32_t> id_field(const Record& r, size_t index) {
  std::string_view line(r.text);
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  auto f = fields(line, ':');
  if (f.size() <= index) return std::nullopt;
  return parse_id(f[index]);
}

/// The lowest id in [lo, hi] taken by no record of `set` (field `index`) nor in `extra`.
uint32_t free_id(const RecordSet& set, size_t index, uint32_t lo, uint32_t hi, const std::set<uint32_t>& extra) {
  std::set<uint32_t> used = extra;
  for (const auto& r : set)
    if (auto id = id_field(r, index)) used.insert(*id);
  for (uint32_t id = hi;; --id) {  // system ids count down from the top, as adduser does
    if (!used.count(id)) return id;
    if (id == lo) break;
  }
  throw Error(ErrorKind::failed, "no free id in " + std::to_string(lo) + ".." + std::to_string(hi));
}

void remap(RecordSet& set, size_t index, const std::set<std::string>& names, std::map<uint32_t, uint32_t>& map,
           const std::set<uint32_t>& also_used) {
  for (auto& r : set) {
    if (!names.count(r.key)) continue;
    auto id = id_field(r, index);
    if (!id) continue;
    bool clash = false;
    for (const auto& other : set)
      if (other.key != r.key && !names.count(other.key) && id_field(other, index) == id) clash = true;
    if (!clash) continue;
    uint32_t lo = *id < 1000 ? 100 : 1000, hi = *id < 1000 ? 999 : 59999;
    std::set<uint32_t> extra = also_used;
    for (const auto& [from, to] : map) extra.insert(to);
    uint32_t fresh = free_id(set, index, lo, hi, extra);
    map[*id] = fresh;
    r.text = with_field(r.text, index, std::to_string(fresh));
  }
}

}  // namespace

const std::vector<MergeDriver>& merge_drivers() {
  static const std::vector<MergeDriver> table = {
      {"/var/lib/dpkg/status", RecordFormat::dpkg_status, DriverRole::packages},
      {"/var/lib/dpkg/statoverride", RecordFormat::statoverride},
      {"/etc/passwd", RecordFormat::colon_lines, DriverRole::users},
      {"/etc/group", RecordFormat::colon_lines, DriverRole::groups},
      {"/etc/shadow", RecordFormat::colon_lines, DriverRole::records, 0640},
      {"/etc/gshadow", RecordFormat::colon_lines, DriverRole::records, 0640},
      {"/etc/subuid", RecordFormat::colon_lines},
      {"/etc/subgid", RecordFormat::colon_lines},
  };
  return table;
}

const MergeDriver* merge_driver(std::string_view path) {
  std::string p(path);
  for (const auto& d : merge_drivers())
    if (::fnmatch(d.pattern.c_str(), p.c_str(), FNM_PATHNAME) == 0) return &d;
  return nullptr;
}

const std::vector<std::string>& merge_paths() {
  static const std::vector<std::string> paths = [] {
    std::vector<std::string> out;
    for (const auto& d : merge_drivers())
      if (d.pattern.find_first_of("*?[") == std::string::npos) out.push_back(d.pattern);
    std::sort(out.begin(), out.end());
    return out;
  }();
  return paths;
}

std::optional<RecordFormat> merge_format(std::string_view path) {
  if (const MergeDriver* d = merge_driver(path)) return d->format;
  return std::nullopt;
}

RecordSet parse_records(RecordFormat format, std::string_view text, const std::string& what) {
  RecordSet out;
  std::unordered_set<std::string> seen;
  auto add = [&](std::string key, std::string record_text, size_t line) {
    if (key.empty()) throw Error(ErrorKind::integrity, what + ": record at line " + std::to_string(line) + " has no key");
    if (!seen.insert(key).second)
      throw Error(ErrorKind::integrity, what + ": '" + key + "' appears twice (line " + std::to_string(line) + ")");
    out.push_back({std::move(key), std::move(record_text)});
  };
  auto lines = split_lines(text);
  if (format == RecordFormat::dpkg_status) {
    std::string stanza, package, arch;
    size_t start = 0;
    auto finish = [&] {
      if (stanza.empty()) return;
      add(arch.empty() ? package : package + ":" + arch, stanza, start);
      stanza.clear();
      package.clear();
      arch.clear();
    };
    for (size_t i = 0; i < lines.size(); ++i) {
      auto line = lines[i];
      if (line.find_first_not_of(" \t") == std::string_view::npos) {
        finish();
        continue;
      }
      if (stanza.empty()) start = i + 1;
      stanza.append(line).push_back('\n');
      if (line.rfind("Package:", 0) == 0) package = words(line.substr(8)).empty() ? "" : std::string(words(line.substr(8))[0]);
      if (line.rfind("Architecture:", 0) == 0)
        arch = words(line.substr(13)).empty() ? "" : std::string(words(line.substr(13))[0]);
    }
    finish();
    return out;
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    auto line = lines[i];
    if (line.empty()) continue;
    std::string key;
    if (format == RecordFormat::colon_lines) {
      key = std::string(fields(line, ':')[0]);
      if (line.find(':') == std::string_view::npos) key.clear();
    } else {
      auto w = words(line);
      if (w.size() == 4) key = std::string(w[3]);
    }
    add(std::move(key), std::string(line) + "\n", i + 1);
  }
  return out;
}

std::string format_records(RecordFormat format, const RecordSet& records) {
  std::string out;
  for (const auto& r : records) {
    out += r.text;
    if (format == RecordFormat::dpkg_status) out += '\n';
  }
  return out;
}

void to_json(nlohmann::json& j, const RecordDelta& d) {
  nlohmann::json up = nlohmann::json::array();
  for (const auto& r : d.upsert) up.push_back(r.text);
  j = {{"upsert", up}, {"remove", d.remove}};
}

RecordDelta delta_from_json(RecordFormat format, const nlohmann::json& j, const std::string& what) {
  RecordDelta d;
  if (!j.is_object() || !j.contains("upsert") || !j.contains("remove") || !j["upsert"].is_array() ||
      !j["remove"].is_array())
    throw Error(ErrorKind::integrity, what + ": a record delta needs arrays 'upsert' and 'remove'");
  for (const auto& t : j["upsert"]) {
    if (!t.is_string()) throw Error(ErrorKind::integrity, what + ": a record is not a string");
    auto parsed = parse_records(format, t.get<std::string>(), what);
    if (parsed.size() != 1) throw Error(ErrorKind::integrity, what + ": an entry of 'upsert' is not one record");
    d.upsert.push_back(std::move(parsed[0]));
  }
  for (const auto& k : j["remove"]) {
    if (!k.is_string()) throw Error(ErrorKind::integrity, what + ": a removed key is not a string");
    d.remove.push_back(k.get<std::string>());
  }
  return d;
}

RecordDelta diff_records(const RecordSet& before, const RecordSet& after) {
  RecordDelta d;
  auto old = by_key(before);
  auto now = by_key(after);
  for (const auto& r : after) {
    auto it = old.find(r.key);
    if (it == old.end() || it->second->text != r.text) d.upsert.push_back(r);
  }
  for (const auto& r : before)
    if (!now.count(r.key)) d.remove.push_back(r.key);
  return d;
}

void apply_delta(RecordSet& set, const RecordDelta& delta) {
  std::unordered_set<std::string> gone(delta.remove.begin(), delta.remove.end());
  std::erase_if(set, [&](const Record& r) { return gone.count(r.key) > 0; });
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < set.size(); ++i) index[set[i].key] = i;
  for (const auto& r : delta.upsert) {
    auto it = index.find(r.key);
    if (it != index.end()) {
      set[it->second] = r;
    } else {
      index[r.key] = set.size();
      set.push_back(r);
    }
  }
}

MergeResult merge3(const RecordSet& o, const RecordSet& n, const RecordSet& e, bool keep_local) {
  MergeResult res;
  auto om = by_key(o), nm = by_key(n);
  std::unordered_set<std::string> in_e;
  for (const auto& rec : e) {
    in_e.insert(rec.key);
    auto ni = nm.find(rec.key);
    auto oi = om.find(rec.key);
    if (ni == nm.end()) {
      if (oi != om.end()) {
        res.removed.push_back(rec.key);  // the layers dropped it
        continue;
      }
      res.merged.push_back(rec);  // the endpoint's own
      continue;
    }
    const Record& nr = *ni->second;
    if (nr.text == rec.text) {
      res.merged.push_back(rec);
    } else if (keep_local && (oi == om.end() || oi->second->text == nr.text)) {
      res.kept_local.push_back(rec.key);  // changed here, not by the layer
      res.merged.push_back(rec);
    } else {
      res.replaced.push_back(rec.key);
      res.merged.push_back(nr);
    }
  }
  for (const auto& rec : n) {
    if (in_e.count(rec.key)) continue;
    res.added.push_back(rec.key);
    res.merged.push_back(rec);
  }
  return res;
}

std::string stanza_field(std::string_view stanza, std::string_view field) {
  for (auto line : split_lines(stanza)) {
    if (line.size() > field.size() && line.substr(0, field.size()) == field && line[field.size()] == ':') {
      auto w = line.substr(field.size() + 1);
      size_t a = w.find_first_not_of(" \t");
      if (a == std::string_view::npos) return "";
      size_t b = w.find_last_not_of(" \t\r");
      return std::string(w.substr(a, b - a + 1));
    }
  }
  return "";
}

namespace {

int order(char c) {
  if (isdigit(static_cast<unsigned char>(c))) return 0;
  if (isalpha(static_cast<unsigned char>(c))) return c;
  if (c == '~') return -1;
  if (c) return c + 256;
  return 0;
}

// dpkg's verrevcmp: alternating non-digit and digit runs.
int compare_part(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    int first_diff = 0;
    while ((i < a.size() && !isdigit(static_cast<unsigned char>(a[i]))) ||
           (j < b.size() && !isdigit(static_cast<unsigned char>(b[j])))) {
      int ac = i < a.size() ? order(a[i]) : 0;
      int bc = j < b.size() ? order(b[j]) : 0;
      if (ac != bc) return ac - bc;
      ++i;
      ++j;
    }
    while (i < a.size() && a[i] == '0') ++i;
    while (j < b.size() && b[j] == '0') ++j;
    while (i < a.size() && j < b.size() && isdigit(static_cast<unsigned char>(a[i])) &&
           isdigit(static_cast<unsigned char>(b[j]))) {
      if (!first_diff) first_diff = a[i] - b[j];
      ++i;
      ++j;
    }
    if (i < a.size() && isdigit(static_cast<unsigned char>(a[i]))) return 1;
    if (j < b.size() && isdigit(static_cast<unsigned char>(b[j]))) return -1;
    if (first_diff) return first_diff;
  }
  return 0;
}

struct Version {
  uint64_t epoch = 0;
  std::string_view upstream, revision;
};

Version split_version(std::string_view v) {
  Version out;
  size_t colon = v.find(':');
  if (colon != std::string_view::npos) {
    for (char c : v.substr(0, colon))
      if (isdigit(static_cast<unsigned char>(c))) out.epoch = out.epoch * 10 + static_cast<uint64_t>(c - '0');
    v = v.substr(colon + 1);
  }
  size_t dash = v.rfind('-');
  if (dash != std::string_view::npos) {
    out.upstream = v.substr(0, dash);
    out.revision = v.substr(dash + 1);
  } else {
    out.upstream = v;
  }
  return out;
}

}  // namespace

int compare_versions(std::string_view a, std::string_view b) {
  Version va = split_version(a), vb = split_version(b);
  if (va.epoch != vb.epoch) return va.epoch < vb.epoch ? -1 : 1;
  if (int c = compare_part(va.upstream, vb.upstream)) return c;
  return compare_part(va.revision, vb.revision);
}

void to_json(nlohmann::json& j, const IdMap& m) {
  auto side = [](const std::map<uint32_t, uint32_t>& ids) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& [from, to] : ids) o[std::to_string(from)] = to;
    return o;
  };
  j = {{"uid", side(m.uid)}, {"gid", side(m.gid)}};
}

void from_json(const nlohmann::json& j, IdMap& m) {
  auto side = [](const nlohmann::json& o, std::map<uint32_t, uint32_t>& ids) {
    for (const auto& [from, to] : o.items()) {
      auto id = parse_id(from);
      if (!id) throw Error(ErrorKind::integrity, "id map: '" + from + "' is not an id");
      ids[*id] = to.get<uint32_t>();
    }
  };
  if (j.contains("uid")) side(j["uid"], m.uid);
  if (j.contains("gid")) side(j["gid"], m.gid);
}

IdSets ids_in(const RecordSet& passwd, const RecordSet& group) {
  IdSets out;
  for (const auto& r : passwd) {
    if (auto uid = id_field(r, 2)) out.uid.insert(*uid);
    if (auto gid = id_field(r, 3)) out.gid.insert(*gid);
  }
  for (const auto& r : group)
    if (auto gid = id_field(r, 2)) out.gid.insert(*gid);
  return out;
}

IdMap remap_clashes(RecordSet& passwd, RecordSet& group, const std::set<std::string>& new_users,
                    const std::set<std::string>& new_groups, const IdSets& retired) {
  IdMap map;
  remap(group, 2, new_groups, map.gid, retired.gid);
  // A new user's primary group follows its group.
  for (auto& r : passwd) {
    if (!new_users.count(r.key)) continue;
    if (auto gid = id_field(r, 3); gid && map.gid.count(*gid)) r.text = with_field(r.text, 3, std::to_string(map.gid[*gid]));
  }
  remap(passwd, 2, new_users, map.uid, retired.uid);
  return map;
}

void translate_ids(RecordSet& passwd, RecordSet& group, const IdMap& map) {
  for (auto& r : passwd) {
    if (auto uid = id_field(r, 2); uid && map.uid.count(*uid)) r.text = with_field(r.text, 2, std::to_string(map.uid.at(*uid)));
    if (auto gid = id_field(r, 3); gid && map.gid.count(*gid)) r.text = with_field(r.text, 3, std::to_string(map.gid.at(*gid)));
  }
  for (auto& r : group)
    if (auto gid = id_field(r, 2); gid && map.gid.count(*gid)) r.text = with_field(r.text, 2, std::to_string(map.gid.at(*gid)));
}

}  // namespace mirage::layer

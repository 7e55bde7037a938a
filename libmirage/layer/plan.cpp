#include "libmirage/layer/plan.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::layer {

using nlohmann::json;

namespace {

bool under_etc(const std::string& p) { return p.rfind("/etc/", 0) == 0; }

bool same(const tree::Entry& a, const tree::Entry& b) { return same_content(a, b) && same_metadata(a, b); }


void package_changes(const RecordSet& e, const MergeResult& m, std::vector<PackageChange>& out) {
  std::map<std::string, const Record*> before;
  for (const auto& r : e) before[r.key] = &r;
  std::map<std::string, const Record*> after;
  for (const auto& r : m.merged) after[r.key] = &r;
  for (const auto& key : m.replaced) {
    std::string from = stanza_field(before[key]->text, "Version"), to = stanza_field(after[key]->text, "Version");
    if (from == to) continue;
    out.push_back({key, from, to, compare_versions(to, from) < 0 ? "downgrade" : "upgrade"});
  }
  for (const auto& key : m.added) out.push_back({key, "", stanza_field(after[key]->text, "Version"), "install"});
  for (const auto& key : m.removed)
    out.push_back({key, stanza_field(before[key]->text, "Version"), "", "remove"});
}

}  // namespace

std::string_view action_name(Action a) {
  switch (a) {
    case Action::create: return "create";
    case Action::replace: return "replace";
    case Action::metadata: return "metadata";
    case Action::remove: return "remove";
    case Action::keep_local: return "keep_local";
    case Action::keep_user: return "keep_user";
    case Action::merge: return "merge";
  }
  return "?";
}

bool same_content(const tree::Entry& a, const tree::Entry& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case tree::Kind::file: return a.size == b.size && a.chunks == b.chunks;
    case tree::Kind::symlink: return a.target == b.target;
    case tree::Kind::chardev:
    case tree::Kind::blockdev: return a.rdev == b.rdev;
    default: return true;
  }
}

bool same_metadata(const tree::Entry& a, const tree::Entry& b) {
  if (a.uid != b.uid || a.gid != b.gid || a.xattrs != b.xattrs) return false;
  if (a.kind != tree::Kind::symlink && a.mode != b.mode) return false;
  return a.mtime_ns == b.mtime_ns;
}

json plan_json(const Plan& p, bool with_paths) {
  json counts = json::object();
  for (const auto& [k, v] : p.counts) counts[k] = v;
  json packages = json::array();
  for (const auto& c : p.packages) {
    json pj = {{"package", c.package}, {"change", c.change}};
    if (!c.from.empty()) pj["from"] = c.from;
    if (!c.to.empty()) pj["to"] = c.to;
    packages.push_back(pj);
  }
  json j = {{"counts", counts},       {"fetch_bytes", p.fetch_bytes}, {"local_bytes", p.local_bytes},
            {"packages", packages},   {"conflicts", p.conflicts},     {"id_map", p.new_ids}};
  if (with_paths) {
    json ops = json::array();
    for (const auto& op : p.ops) {
      json o = {{"action", action_name(op.action)}, {"path", op.path}};
      if (op.save_local) o["saved_as"] = op.path + ".mirage-local";
      if (op.fetch_bytes) o["fetch_bytes"] = op.fetch_bytes;
      ops.push_back(o);
    }
    j["ops"] = ops;
  }
  return j;
}

Plan make_plan(const Image& o, Image& n, const Flat& e, const std::map<std::string, RecordSet>& e_records,
               const LayerRules& rules, const PlanOptions& options) {
  Plan plan;
  plan.conflicts = n.conflicts;
  auto count = [&](Action a) { plan.counts[std::string(action_name(a))]++; };

  // Merge-driver files first: a remapped account changes the owners of N's files.
  std::set<std::string> merge_files;
  for (const auto& [p, r] : n.records) merge_files.insert(p);
  for (const auto& [p, r] : o.records) merge_files.insert(p);
  static const RecordSet none;
  auto records_of = [](const std::map<std::string, RecordSet>& m, const std::string& p) -> const RecordSet& {
    auto it = m.find(p);
    return it == m.end() ? none : it->second;
  };
  for (const auto& p : merge_files) {
    bool keep_local = under_etc(p) && options.keep_local_changes;
    MergeResult m = merge3(records_of(o.records, p), records_of(n.records, p), records_of(e_records, p), keep_local);
    const MergeDriver& driver = *merge_driver(p);
    if (options.remove_user_apps && driver.role == DriverRole::packages) {
      auto nm = records_of(n.records, p);
      std::unordered_set<std::string> wanted;
      for (const auto& r : nm) wanted.insert(r.key);
      std::erase_if(m.merged, [&](const Record& r) {
        if (wanted.count(r.key)) return false;
        m.removed.push_back(r.key);
        return true;
      });
    }
    if (driver.role == DriverRole::packages) package_changes(records_of(e_records, p), m, plan.packages);
    plan.merges[p] = std::move(m);
  }
  MergeResult* users_merge = nullptr;
  MergeResult* groups_merge = nullptr;
  for (auto& [p, m] : plan.merges) {
    DriverRole role = merge_driver(p)->role;
    if (role == DriverRole::users && !users_merge) users_merge = &m;
    if (role == DriverRole::groups && !groups_merge) groups_merge = &m;
  }
  if (users_merge || groups_merge) {
    static RecordSet empty_set;
    auto& pw = users_merge ? users_merge->merged : empty_set;
    auto& gr = groups_merge ? groups_merge->merged : empty_set;
    std::set<std::string> users, groups;
    if (users_merge) users.insert(users_merge->added.begin(), users_merge->added.end());
    if (groups_merge) groups.insert(groups_merge->added.begin(), groups_merge->added.end());
    plan.new_ids = remap_clashes(pw, gr, users, groups);
    if (!plan.new_ids.empty()) {
      // The layer's files follow their accounts (its records are already rewritten).
      for (auto& [path, entry] : n.entries) {
        if (auto it = plan.new_ids.uid.find(entry.uid); it != plan.new_ids.uid.end()) entry.uid = it->second;
        if (auto it = plan.new_ids.gid.find(entry.gid); it != plan.new_ids.gid.end()) entry.gid = it->second;
      }
    }
  }
  for (auto& [p, m] : plan.merges) {
    auto ee = e.find(p);
    bool changed = m.changed() || !plan.new_ids.empty();
    const MergeDriver& driver = *merge_driver(p);
    std::string content = format_records(driver.format, m.merged);
    if (ee == e.end() && m.merged.empty()) continue;
    Op op;
    op.action = Action::merge;
    op.path = p;
    auto ne = n.entries.find(p);
    if (ee != e.end())
      op.entry = ee->second;
    else if (ne != n.entries.end())
      op.entry = ne->second;
    else
      // Neither the endpoint nor a layer has the file itself: root's, private for secrets.
      op.entry = tree::Entry{p.substr(p.rfind('/') + 1), tree::Kind::file, driver.mode, 0, 0, 0, 0, 0, "", {}, {}, {}, "",
                             false};
    if (!changed && ee != e.end()) continue;
    op.content = std::move(content);
    op.entry.size = op.content.size();
    op.entry.chunks.clear();
    plan.ops.push_back(std::move(op));
    count(Action::merge);
  }

  std::unordered_set<Digest, util::DigestHash> chunks_here, counted;
  for (const auto& [p, entry] : e)
    if (entry.kind == tree::Kind::file)
      for (const auto& c : entry.chunks) chunks_here.insert(c.id);

  // O ∪ N in path order, without copying the paths.
  std::vector<const std::string*> paths;
  paths.reserve(n.entries.size() + o.entries.size());
  {
    auto ni = n.entries.cbegin();
    auto oi = o.entries.cbegin();
    while (ni != n.entries.cend() || oi != o.entries.cend()) {
      if (oi == o.entries.cend() || (ni != n.entries.cend() && ni->first < oi->first)) {
        paths.push_back(&(ni++)->first);
      } else if (ni == n.entries.cend() || oi->first < ni->first) {
        paths.push_back(&(oi++)->first);
      } else {
        paths.push_back(&ni->first);
        ++ni;
        ++oi;
      }
    }
  }
  std::vector<Op> removes;
  auto dno = [&](const std::string& p) {
    if (rules.do_not_override(p) || rules.is_user_area_root(p)) return true;
    for (const auto& r : n.do_not_override)
      if (policy::rule_matches(r, p)) return true;
    return false;
  };
  for (const std::string* path_ptr : paths) {
    const std::string& p = *path_ptr;
    if (p == "/" || merge_format(p) || is_identity(p) || rules.in_user_area(p)) continue;
    auto ni = n.entries.find(p);
    auto oi = o.entries.find(p);
    auto ei = e.find(p);
    const tree::Entry* ne = ni == n.entries.end() ? nullptr : &ni->second;
    const tree::Entry* oe = oi == o.entries.end() ? nullptr : &oi->second;
    const tree::Entry* ee = ei == e.end() ? nullptr : &ei->second;
    Op op;
    op.path = p;
    if (ne) {
      op.entry = *ne;
      if (ee && dno(p)) {
        if (options.report_kept) plan.ops.push_back({Action::keep_user, p, *ne, false, "", 0, 0});
        continue;
      }
      if (!ee) {
        op.action = Action::create;
      } else if (same(*ee, *ne)) {
        continue;
      } else if (under_etc(p) && options.keep_local_changes && (!oe || same(*oe, *ne))) {
        // Changed here and not by the layers; with no O (first assignment) a config the
        // endpoint already has is taken as its own.
        op.action = Action::keep_local;
        count(op.action);
        if (options.report_kept) plan.ops.push_back(std::move(op));
        continue;
      } else if (same_content(*ee, *ne)) {
        op.action = Action::metadata;
      } else {
        op.action = Action::replace;
        bool both_changed = under_etc(p) && options.keep_local_changes && oe && !same(*ee, *oe);
        op.save_local = (both_changed && ee->kind != tree::Kind::dir) || (ee->kind == tree::Kind::dir);
      }
      if (ne->kind == tree::Kind::file && (op.action == Action::create || op.action == Action::replace)) {
        for (const auto& c : ne->chunks) {
          if (chunks_here.count(c.id)) {
            op.local_bytes += c.size;
          } else if (counted.insert(c.id).second) {
            op.fetch_bytes += c.size;
          }
        }
        plan.fetch_bytes += op.fetch_bytes;
        plan.local_bytes += op.local_bytes;
      }
      count(op.action);
      plan.ops.push_back(std::move(op));
    } else if (oe && ee) {
      op.action = Action::remove;
      op.entry = *ee;
      op.save_local = under_etc(p) && ee->kind != tree::Kind::dir && !same(*ee, *oe);
      count(op.action);
      removes.push_back(std::move(op));
    }
  }
  if (options.remove_user_apps || options.report_kept) {
    for (const auto& [p, ee] : e) {
      if (p == "/" || n.entries.count(p) || o.entries.count(p) || merge_format(p) || is_identity(p) ||
          rules.in_user_area(p) || rules.is_user_area_root(p) || rules.excluded(p))
        continue;
      Op op{options.remove_user_apps ? Action::remove : Action::keep_user, p, ee, false, "", 0, 0};
      count(op.action);
      if (options.remove_user_apps)
        removes.push_back(std::move(op));
      else
        plan.ops.push_back(std::move(op));
    }
  }
  // A directory whose contents change gets its times back afterwards (as N has them).
  std::set<std::string> touched;
  for (const auto* list : {&plan.ops, &removes})
    for (const auto& op : *list)
      if (op.action != Action::keep_local && op.action != Action::keep_user && op.action != Action::metadata)
        touched.insert(tree::parent_path(op.path));
  std::set<std::string> has_op;
  for (const auto& op : plan.ops) has_op.insert(op.path);
  for (const auto& dir : touched) {
    auto ni = n.entries.find(dir);
    if (dir == "/" || has_op.count(dir) || ni == n.entries.end() || ni->second.kind != tree::Kind::dir) continue;
    if (is_identity(dir) || rules.in_user_area(dir) || rules.is_user_area_root(dir)) continue;
    auto ei = e.find(dir);
    if (ei == e.end() || ei->second.kind != tree::Kind::dir) continue;
    plan.ops.push_back({Action::metadata, dir, ni->second, false, "", 0, 0});
  }
  std::stable_sort(plan.ops.begin(), plan.ops.end(), [](const Op& a, const Op& b) { return a.path < b.path; });
  std::sort(removes.begin(), removes.end(), [](const Op& a, const Op& b) { return a.path > b.path; });
  for (auto& r : removes) plan.ops.push_back(std::move(r));
  return plan;
}

}  // namespace mirage::layer

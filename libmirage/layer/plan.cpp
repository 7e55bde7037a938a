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

void count_bytes(Op& op, const ChunkSet& here, ChunkSet& counted, Plan& plan) {
  for (const auto& c : op.entry.chunks) {
    if (here.count(c.id))
      op.local_bytes += c.size;
    else if (counted.insert(c.id).second)
      op.fetch_bytes += c.size;
  }
  plan.fetch_bytes += op.fetch_bytes;
  plan.local_bytes += op.local_bytes;
}

namespace {

/// make_plan's steps, in order: merge-driver files (their records merged 3-way), account
/// ids remapped where they clash, the merge ops; then every path of O ∪ N; then the
/// endpoint's own paths (kept or removed); then directory times; then the order.
class PlanBuilder {
 public:
  PlanBuilder(const Image& o, Image& n, const Flat& e, const std::map<std::string, RecordSet>& e_records,
              const LayerRules& rules, const PlanOptions& options)
      : m_o(o), m_n(n), m_e(e), m_e_records(e_records), m_rules(rules), m_options(options) {
    m_plan.conflicts = n.conflicts;
  }

  Plan build() {
    // Merge-driver files first: a remapped account changes the owners of N's files.
    merge_records();
    remap_accounts();
    merge_ops();
    tree_ops();
    endpoint_ops();
    directory_times();
    std::stable_sort(m_plan.ops.begin(), m_plan.ops.end(), [](const Op& a, const Op& b) { return a.path < b.path; });
    std::sort(m_removes.begin(), m_removes.end(), [](const Op& a, const Op& b) { return a.path > b.path; });
    for (auto& r : m_removes) m_plan.ops.push_back(std::move(r));
    return std::move(m_plan);
  }

 private:
  void count(Action a) { m_plan.counts[std::string(action_name(a))]++; }

  static const RecordSet& records_of(const std::map<std::string, RecordSet>& m, const std::string& p) {
    static const RecordSet none;
    auto it = m.find(p);
    return it == m.end() ? none : it->second;
  }

  void merge_records() {
    std::set<std::string> merge_files;
    for (const auto& [p, r] : m_n.records) merge_files.insert(p);
    for (const auto& [p, r] : m_o.records) merge_files.insert(p);
    for (const auto& p : merge_files) {
      bool keep_local = under_etc(p) && m_options.keep_local_changes;
      MergeResult m = merge3(records_of(m_o.records, p), records_of(m_n.records, p), records_of(m_e_records, p), keep_local);
      const MergeDriver& driver = *merge_driver(p);
      if (m_options.remove_user_apps && driver.role == DriverRole::packages) {
        auto nm = records_of(m_n.records, p);
        std::unordered_set<std::string> wanted;
        for (const auto& r : nm) wanted.insert(r.key);
        std::erase_if(m.merged, [&](const Record& r) {
          if (wanted.count(r.key)) return false;
          m.removed.push_back(r.key);
          return true;
        });
      }
      if (driver.role == DriverRole::packages) package_changes(records_of(m_e_records, p), m, m_plan.packages);
      m_plan.merges[p] = std::move(m);
    }
  }

  /// A layer's account whose id is taken on the endpoint gets a free one; the layer's
  /// files follow their accounts (its records are already rewritten).
  void remap_accounts() {
    MergeResult* users_merge = nullptr;
    MergeResult* groups_merge = nullptr;
    for (auto& [p, m] : m_plan.merges) {
      DriverRole role = merge_driver(p)->role;
      if (role == DriverRole::users && !users_merge) users_merge = &m;
      if (role == DriverRole::groups && !groups_merge) groups_merge = &m;
    }
    if (!users_merge && !groups_merge) return;
    static RecordSet empty_set;
    auto& pw = users_merge ? users_merge->merged : empty_set;
    auto& gr = groups_merge ? groups_merge->merged : empty_set;
    std::set<std::string> users, groups;
    if (users_merge) users.insert(users_merge->added.begin(), users_merge->added.end());
    if (groups_merge) groups.insert(groups_merge->added.begin(), groups_merge->added.end());
    // No fresh id is one the endpoint's or the old base's accounts had: one the merge
    // drops may still own files.
    IdSets retired;
    for (const auto* records : {&m_o.records, &m_e_records}) {
      IdSets had = ids_in(records_of(*records, "/etc/passwd"), records_of(*records, "/etc/group"));
      retired.uid.merge(had.uid);
      retired.gid.merge(had.gid);
    }
    m_plan.new_ids = remap_clashes(pw, gr, users, groups, retired);
    if (m_plan.new_ids.empty()) return;
    for (auto& [path, entry] : m_n.entries) {
      if (auto it = m_plan.new_ids.uid.find(entry.uid); it != m_plan.new_ids.uid.end()) entry.uid = it->second;
      if (auto it = m_plan.new_ids.gid.find(entry.gid); it != m_plan.new_ids.gid.end()) entry.gid = it->second;
    }
  }

  void merge_ops() {
    for (auto& [p, m] : m_plan.merges) {
      auto ee = m_e.find(p);
      bool changed = m.changed() || !m_plan.new_ids.empty();
      const MergeDriver& driver = *merge_driver(p);
      std::string content = format_records(driver.format, m.merged);
      if (ee == m_e.end() && m.merged.empty()) continue;
      Op op;
      op.action = Action::merge;
      op.path = p;
      auto ne = m_n.entries.find(p);
      if (ee != m_e.end())
        op.entry = ee->second;
      else if (ne != m_n.entries.end())
        op.entry = ne->second;
      else
        // Neither the endpoint nor a layer has the file itself: root's, private for secrets.
        op.entry = tree::Entry{p.substr(p.rfind('/') + 1), tree::Kind::file, driver.mode, 0, 0, 0, 0, 0, "", {}, {}, {}, "",
                               false};
      if (!changed && ee != m_e.end()) continue;
      op.content = std::move(content);
      op.entry.size = op.content.size();
      op.entry.chunks.clear();
      m_plan.ops.push_back(std::move(op));
      count(Action::merge);
    }
  }

  /// O ∪ N in path order, without copying the paths.
  std::vector<const std::string*> layer_paths() const {
    std::vector<const std::string*> paths;
    paths.reserve(m_n.entries.size() + m_o.entries.size());
    auto ni = m_n.entries.cbegin();
    auto oi = m_o.entries.cbegin();
    while (ni != m_n.entries.cend() || oi != m_o.entries.cend()) {
      if (oi == m_o.entries.cend() || (ni != m_n.entries.cend() && ni->first < oi->first)) {
        paths.push_back(&(ni++)->first);
      } else if (ni == m_n.entries.cend() || oi->first < ni->first) {
        paths.push_back(&(oi++)->first);
      } else {
        paths.push_back(&ni->first);
        ++ni;
        ++oi;
      }
    }
    return paths;
  }

  bool do_not_override(const std::string& p) const {
    if (m_rules.do_not_override(p) || m_rules.is_user_area_root(p)) return true;
    for (const auto& r : m_n.do_not_override)
      if (policy::rule_matches(r, p)) return true;
    return false;
  }

  void tree_ops() {
    for (const auto& [p, entry] : m_e)
      if (entry.kind == tree::Kind::file)
        for (const auto& c : entry.chunks) m_chunks_here.insert(c.id);
    for (const std::string* path_ptr : layer_paths()) {
      const std::string& p = *path_ptr;
      if (p == "/" || merge_format(p) || is_identity(p) || m_rules.in_user_area(p)) continue;
      auto ni = m_n.entries.find(p);
      auto oi = m_o.entries.find(p);
      auto ei = m_e.find(p);
      const tree::Entry* ne = ni == m_n.entries.end() ? nullptr : &ni->second;
      const tree::Entry* oe = oi == m_o.entries.end() ? nullptr : &oi->second;
      const tree::Entry* ee = ei == m_e.end() ? nullptr : &ei->second;
      if (ne) {
        layer_op(p, *ne, oe, ee);
      } else if (oe && ee) {
        Op op;
        op.path = p;
        op.action = Action::remove;
        op.entry = *ee;
        op.save_local = under_etc(p) && ee->kind != tree::Kind::dir && !same(*ee, *oe);
        count(op.action);
        m_removes.push_back(std::move(op));
      }
    }
  }

  /// A path N has: what E needs to match it (DESIGN.md §5).
  void layer_op(const std::string& p, const tree::Entry& ne, const tree::Entry* oe, const tree::Entry* ee) {
    Op op;
    op.path = p;
    op.entry = ne;
    if (ee && do_not_override(p)) {
      if (m_options.report_kept) {  // counted as listed, like endpoint_ops' kept paths
        count(Action::keep_user);
        m_plan.ops.push_back({Action::keep_user, p, ne, false, "", 0, 0});
      }
      return;
    }
    if (!ee) {
      op.action = Action::create;
    } else if (same(*ee, ne)) {
      return;
    } else if (under_etc(p) && m_options.keep_local_changes && (!oe || same(*oe, ne))) {
      // Changed here and not by the layers; with no O (first assignment) a config the
      // endpoint already has is taken as its own.
      op.action = Action::keep_local;
      count(op.action);
      if (m_options.report_kept) m_plan.ops.push_back(std::move(op));
      return;
    } else if (same_content(*ee, ne)) {
      op.action = Action::metadata;
    } else {
      op.action = Action::replace;
      bool both_changed = under_etc(p) && m_options.keep_local_changes && oe && !same(*ee, *oe);
      op.save_local = (both_changed && ee->kind != tree::Kind::dir) || (ee->kind == tree::Kind::dir);
    }
    if (ne.kind == tree::Kind::file && (op.action == Action::create || op.action == Action::replace))
      count_bytes(op, m_chunks_here, m_counted, m_plan);
    count(op.action);
    m_plan.ops.push_back(std::move(op));
  }

  /// What only the endpoint has: removed (remove_user_apps) or reported as kept.
  void endpoint_ops() {
    if (!m_options.remove_user_apps && !m_options.report_kept) return;
    for (const auto& [p, ee] : m_e) {
      if (p == "/" || m_n.entries.count(p) || m_o.entries.count(p) || merge_format(p) || is_identity(p) ||
          m_rules.in_user_area(p) || m_rules.is_user_area_root(p) || m_rules.excluded(p))
        continue;
      Op op{m_options.remove_user_apps ? Action::remove : Action::keep_user, p, ee, false, "", 0, 0};
      count(op.action);
      if (m_options.remove_user_apps)
        m_removes.push_back(std::move(op));
      else
        m_plan.ops.push_back(std::move(op));
    }
  }

  /// A directory whose contents change gets its times back afterwards (as N has them).
  void directory_times() {
    std::set<std::string> touched;
    for (const auto* list : {&m_plan.ops, &m_removes})
      for (const auto& op : *list)
        if (op.action != Action::keep_local && op.action != Action::keep_user && op.action != Action::metadata)
          touched.insert(tree::parent_path(op.path));
    std::set<std::string> has_op;
    for (const auto& op : m_plan.ops) has_op.insert(op.path);
    for (const auto& dir : touched) {
      auto ni = m_n.entries.find(dir);
      if (dir == "/" || has_op.count(dir) || ni == m_n.entries.end() || ni->second.kind != tree::Kind::dir) continue;
      if (is_identity(dir) || m_rules.in_user_area(dir) || m_rules.is_user_area_root(dir)) continue;
      auto ei = m_e.find(dir);
      if (ei == m_e.end() || ei->second.kind != tree::Kind::dir) continue;
      count(Action::metadata);
      m_plan.ops.push_back({Action::metadata, dir, ni->second, false, "", 0, 0});
    }
  }

  const Image& m_o;
  Image& m_n;
  const Flat& m_e;
  const std::map<std::string, RecordSet>& m_e_records;
  const LayerRules& m_rules;
  const PlanOptions& m_options;
  Plan m_plan;
  std::vector<Op> m_removes;
  std::unordered_set<Digest, util::DigestHash> m_chunks_here, m_counted;
};

}  // namespace

Plan make_plan(const Image& o, Image& n, const Flat& e, const std::map<std::string, RecordSet>& e_records,
               const LayerRules& rules, const PlanOptions& options) {
  return PlanBuilder(o, n, e, e_records, rules, options).build();
}

}  // namespace mirage::layer

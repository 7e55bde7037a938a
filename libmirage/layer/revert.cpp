#include "libmirage/layer/revert.hpp"

#include <set>
#include <unordered_set>

#include "libmirage/util/error.hpp"

namespace mirage::layer {

namespace {

/// Equal as far as the listing of a tree can tell: content, metadata and hardlink group.
bool same_entry(const tree::Entry& a, const tree::Entry& b) {
  return same_content(a, b) && same_metadata(a, b) && a.link_group == b.link_group;
}

class RevertPlanner {
 public:
  RevertPlanner(const Flat& s, const Flat& e, RevertScope scope, const policy::UploadPolicy& policy)
      : m_s(s), m_e(e), m_scope(scope), m_policy(policy) {
    for (const auto& [path, entry] : e)
      if (entry.kind == tree::Kind::file)
        for (const auto& c : entry.chunks) m_chunks_here.insert(c.id);
  }

  Plan build() {
    removes();
    choose_writes();
    whole_link_groups();
    emit_writes();
    directory_times();
    return std::move(m_plan);
  }

 private:
  /// Whether the scope covers `path` (the root: its metadata is set by the caller).
  bool in_scope(const std::string& path) const {
    if (path == "/") return false;
    if (m_scope == RevertScope::full) return true;
    return m_policy.in_user_area(path) == (m_scope == RevertScope::user_data);
  }
  bool unprotected(const std::string& path) const { return m_policy.classify(path, false) == policy::Decision::skip; }

  void add(Op op) {
    m_plan.counts[std::string(action_name(op.action))]++;
    m_plan.ops.push_back(std::move(op));
  }

  /// What E has and S lacks in the scope, children first; and a directory of E where S
  /// has something else (emptied above it, then removed so the other kind can go in).
  void removes() {
    for (auto it = m_e.rbegin(); it != m_e.rend(); ++it) {
      const auto& [p, ee] = *it;
      if (!in_scope(p) || unprotected(p)) continue;
      auto si = m_s.find(p);
      if (si != m_s.end() && !(ee.kind == tree::Kind::dir && si->second.kind != tree::Kind::dir)) continue;
      if (si != m_s.end()) m_gone_dirs.insert(p);
      add({Action::remove, p, ee, false, "", 0, 0});
    }
  }

  void choose_writes() {
    for (const auto& [p, se] : m_s) {
      if (!in_scope(p)) continue;
      auto ei = m_e.find(p);
      bool absent = ei == m_e.end() || m_gone_dirs.count(p);
      if (unprotected(p)) {  // a mount point comes back; nothing else of the unprotected area is touched
        if (absent && se.kind == tree::Kind::dir) m_writes[p] = Action::create;
        continue;
      }
      if (absent)
        m_writes[p] = Action::create;
      else if (same_entry(ei->second, se))
        continue;
      else if (same_content(ei->second, se) && ei->second.link_group == se.link_group)
        m_writes[p] = Action::metadata;
      else
        m_writes[p] = Action::replace;
    }
  }

  /// A member of a hardlink group written means every member in the scope is, so that
  /// the apply links them all to the group's first member again.
  void whole_link_groups() {
    std::set<std::string> groups;
    for (const auto& [p, action] : m_writes) {
      const auto& se = m_s.at(p);
      if (se.kind == tree::Kind::file && !se.link_group.empty() && action != Action::metadata) groups.insert(se.link_group);
    }
    if (groups.empty()) return;
    for (const auto& [p, se] : m_s) {
      if (se.kind != tree::Kind::file || !groups.count(se.link_group) || !in_scope(p) || unprotected(p)) continue;
      auto it = m_writes.find(p);
      if (it == m_writes.end() || it->second == Action::metadata) m_writes[p] = Action::replace;
    }
  }

  void emit_writes() {
    ChunkSet counted;
    std::vector<std::string> set_aside;
    for (const auto& [p, action] : m_writes) {
      const auto& se = m_s.at(p);
      Op op{action, p, se, false, "", 0, 0};
      if (se.kind == tree::Kind::file && action != Action::metadata) count_bytes(op, m_chunks_here, counted, m_plan);
      // A file of E where S has a directory: the apply sets it aside as PATH.mirage-local
      // to make the directory; a revert does not keep it.
      auto ei = m_e.find(p);
      if (se.kind == tree::Kind::dir && ei != m_e.end() && ei->second.kind != tree::Kind::dir &&
          !m_s.count(p + ".mirage-local"))
        set_aside.push_back(p + ".mirage-local");
      add(std::move(op));
    }
    for (auto& p : set_aside) {
      tree::Entry gone;
      gone.name = tree::base_name(p);
      add({Action::remove, p, gone, false, "", 0, 0});
    }
  }

  /// A directory whose contents change gets S's metadata back once they have.
  void directory_times() {
    std::set<std::string> touched, has_op;
    for (const auto& op : m_plan.ops) {
      has_op.insert(op.path);
      if (op.action != Action::metadata) touched.insert(tree::parent_path(op.path));
    }
    for (const auto& dir : touched) {
      if (has_op.count(dir) || !in_scope(dir)) continue;
      auto si = m_s.find(dir);
      auto ei = m_e.find(dir);
      if (si == m_s.end() || ei == m_e.end() || si->second.kind != tree::Kind::dir || ei->second.kind != tree::Kind::dir)
        continue;
      add({Action::metadata, dir, si->second, false, "", 0, 0});
    }
  }

  const Flat& m_s;
  const Flat& m_e;
  RevertScope m_scope;
  const policy::UploadPolicy& m_policy;
  Plan m_plan;
  std::unordered_set<util::Digest, util::DigestHash> m_chunks_here;
  std::set<std::string> m_gone_dirs;          ///< directories of E removed for another kind in S
  std::map<std::string, Action> m_writes;     ///< S's paths to write, in path order (parents first)
};

}  // namespace

std::string_view scope_name(RevertScope s) {
  switch (s) {
    case RevertScope::system: return "system";
    case RevertScope::full: return "full";
    case RevertScope::user_data: return "user-data";
  }
  return "?";
}

RevertScope scope_from_name(std::string_view name) {
  for (auto s : {RevertScope::system, RevertScope::full, RevertScope::user_data})
    if (scope_name(s) == name) return s;
  throw Error(ErrorKind::usage, "revert mode '" + std::string(name.substr(0, 100)) + "': expected system, full or user-data");
}

Plan make_revert_plan(const Flat& s, const Flat& e, RevertScope scope, const policy::UploadPolicy& policy) {
  return RevertPlanner(s, e, scope, policy).build();
}

}  // namespace mirage::layer

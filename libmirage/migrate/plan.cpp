#include "libmirage/migrate/plan.hpp"

#include <algorithm>
#include <set>

#include "libmirage/layer/records.hpp"
#include "libmirage/migrate/packages.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::migrate {

using nlohmann::json;
using Op = layer::Op;
using OpAction = layer::Action;

void to_json(json& j, const PathDecision& d) {
  j = {{"path", d.path}, {"op", d.op}, {"component", d.component}, {"action", d.rule}, {"why", d.why}};
}

bool goes_to_old_root(const Rules& rules, const layer::LayerRules& layer_rules, const std::string& path) {
  if (path == "/" || path == "/old-root" || path.starts_with("/old-root/")) return false;
  if (layer_rules.in_user_area(path) || layer_rules.is_user_area_root(path)) return false;
  auto x = rules.explain(path);
  return !(x.outcome == Outcome::carried && *x.action == Action::keep_in_place);
}

namespace {

/// Who wins a path, by the rules.
enum class Side { endpoint, merge, fresh };

Side side_of(const Explanation& x) {
  if (x.outcome != Outcome::carried) return Side::fresh;
  switch (*x.action) {
    case Action::keep_endpoint:
    case Action::keep_in_place: return Side::endpoint;
    case Action::merge_3way:
    case Action::merge_records: return Side::merge;
    case Action::take_new: return Side::fresh;
  }
  return Side::fresh;
}

class Builder {
 public:
  Builder(const layer::Image& n, const layer::Flat& e, const Rules& rules, const layer::LayerRules& layer_rules)
      : m_n(n), m_e(e), m_rules(rules), m_layer_rules(layer_rules) {}

  MigrationPlan build(layer::Plan lp) {
    m_out.plan.merges = std::move(lp.merges);
    m_out.plan.new_ids = lp.new_ids;
    m_out.plan.packages = std::move(lp.packages);
    m_out.plan.conflicts = std::move(lp.conflicts);
    for (auto& op : lp.ops) {
      m_seen.insert(op.path);
      decide(std::move(op));
    }
    endpoint_only();
    keep_parents();
    std::stable_sort(m_writes.begin(), m_writes.end(), [](const Op& a, const Op& b) { return a.path < b.path; });
    std::sort(m_removes.begin(), m_removes.end(), [](const Op& a, const Op& b) { return a.path > b.path; });
    for (auto& op : m_writes) m_out.plan.ops.push_back(std::move(op));
    for (auto& op : m_removes) m_out.plan.ops.push_back(std::move(op));
    count_bytes();
    std::sort(m_out.decisions.begin(), m_out.decisions.end(),
              [](const PathDecision& a, const PathDecision& b) { return a.path < b.path; });
    return std::move(m_out);
  }

 private:
  void note(const std::string& path, std::string_view op, const Explanation& x) {
    m_out.decisions.push_back({path, std::string(op), x.component,
                               x.action ? std::string(action_name(*x.action)) : "not-carried", x.reason});
  }
  void keep(const std::string& path, const Explanation& x) { note(path, "keep", x); }
  void push(Op op, const Explanation& x) {
    note(op.path, layer::action_name(op.action), x);
    m_out.plan.counts[std::string(layer::action_name(op.action))]++;
    (op.action == OpAction::remove ? m_removes : m_writes).push_back(std::move(op));
  }
  void remove(const std::string& path, const tree::Entry& ee, const Explanation& x) {
    push({OpAction::remove, path, ee, false, "", 0, 0}, x);
  }

  /// One op of the layer plan, as the rules have it.
  void decide(Op op) {
    auto x = m_rules.explain(op.path);
    Side side = side_of(x);
    auto ei = m_e.find(op.path);
    bool kept = op.action == OpAction::keep_local || op.action == OpAction::keep_user;
    if ((side == Side::endpoint && ei != m_e.end()) || (side == Side::merge && kept)) return keep(op.path, x);
    if (side != Side::fresh || !kept) {
      if (side == Side::fresh && op.action == OpAction::merge) op.content = new_records(op.path);
      // Not carried: the old version is under /old-root, not beside the new one.
      if (side == Side::fresh && ei != m_e.end() && ei->second.kind != tree::Kind::dir) op.save_local = false;
      return push(std::move(op), x);
    }
    // Not carried (or take-new) and kept by the layer plan: N's version, or none.
    auto ni = m_n.entries.find(op.path);
    if (op.action == OpAction::keep_user && ni == m_n.entries.end() && ei != m_e.end())
      return remove(op.path, ei->second, x);
    if (op.action == OpAction::keep_user || ni == m_n.entries.end() || ei == m_e.end()) return keep(op.path, x);
    op.entry = ni->second;
    op.action = layer::same_content(ei->second, ni->second) ? OpAction::metadata : OpAction::replace;
    op.save_local = ei->second.kind == tree::Kind::dir && ni->second.kind != tree::Kind::dir;
    push(std::move(op), x);
  }

  /// A merge-driver file the rules do not carry: the new release's records as they are.
  std::string new_records(const std::string& path) const {
    auto it = m_n.records.find(path);
    return it == m_n.records.end() ? std::string() : layer::format_records(*layer::merge_format(path), it->second);
  }

  /// Paths only the endpoint has that the layer plan left out (identity, runtime state):
  /// the unconditionally excluded ones go, so do those no component carries that are not
  /// runtime state.
  void endpoint_only() {
    for (const auto& [p, ee] : m_e) {
      if (m_seen.count(p) || m_n.entries.count(p) || !goes_to_old_root(m_rules, m_layer_rules, p)) continue;
      auto x = m_rules.explain(p);
      if (side_of(x) != Side::fresh) continue;
      bool runtime = m_layer_rules.excluded(p) || layer::is_identity(p) || layer::merge_format(p);
      if (x.outcome == Outcome::unconditional || !runtime) remove(p, ee, x);
    }
  }

  /// A directory to remove that holds a path that stays (carried, runtime state) stays.
  void keep_parents() {
    std::set<std::string> removed;
    for (const auto& op : m_removes) removed.insert(op.path);
    std::set<std::string> kept;
    for (const auto& op : m_removes) {
      if (op.entry.kind != tree::Kind::dir) continue;
      std::string prefix = op.path + "/";
      for (auto it = m_e.lower_bound(prefix); it != m_e.end() && it->first.starts_with(prefix); ++it)
        if (!removed.count(it->first)) {
          kept.insert(op.path);
          break;
        }
    }
    std::erase_if(m_removes, [&](const Op& op) { return kept.count(op.path) > 0; });
    m_out.plan.counts["remove"] -= kept.size();
    for (auto& d : m_out.decisions)
      if (kept.count(d.path)) {
        d.op = "keep";
        d.why = "it holds paths that stay; " + d.why;
      }
  }

  /// What the writes fetch and what they find here, once per chunk.
  void count_bytes() {
    layer::ChunkSet here, counted;
    for (const auto& [p, entry] : m_e)
      if (entry.kind == tree::Kind::file)
        for (const auto& c : entry.chunks) here.insert(c.id);
    auto& plan = m_out.plan;
    plan.fetch_bytes = plan.local_bytes = 0;
    for (auto& op : plan.ops) {
      op.fetch_bytes = op.local_bytes = 0;
      if (op.entry.kind == tree::Kind::file && (op.action == OpAction::create || op.action == OpAction::replace))
        layer::count_bytes(op, here, counted, plan);
    }
  }

  const layer::Image& m_n;
  const layer::Flat& m_e;
  const Rules& m_rules;
  const layer::LayerRules& m_layer_rules;
  MigrationPlan m_out;
  std::set<std::string> m_seen;
  std::vector<Op> m_writes, m_removes;
};

/// The package database's records by package, from a records map.
std::map<std::string, std::string> versions(const std::map<std::string, layer::RecordSet>& records) {
  std::map<std::string, std::string> out;
  auto it = records.find("/var/lib/dpkg/status");
  if (it == records.end()) return out;
  for (const auto& r : it->second) out[r.key] = layer::stanza_field(r.text, "Version");
  return out;
}

std::vector<layer::PackageChange> package_changes(const layer::Image& o, const layer::Image& n,
                                                  const std::map<std::string, layer::RecordSet>& e_records,
                                                  const std::set<std::string>& e_auto_installed) {
  auto ov = versions(o.records), nv = versions(n.records), ev = versions(e_records);
  auto e_status = e_records.find("/var/lib/dpkg/status");
  auto o_status = o.records.find("/var/lib/dpkg/status");
  auto chosen = e_status == e_records.end()
                    ? std::set<std::string>{}
                    : chosen_packages(e_status->second, e_auto_installed,
                                      o_status == o.records.end() ? std::set<std::string>{} : package_names(o_status->second));
  std::vector<layer::PackageChange> out;
  auto name = [](const std::string& key) { return key.substr(0, key.find(':')); };  // "bash:amd64" -> "bash"
  for (const auto& [pkg, to] : nv) {
    auto e = ev.find(pkg);
    if (e == ev.end()) {
      out.push_back({name(pkg), "", to, "install"});
    } else if (int c = layer::compare_versions(e->second, to); c != 0) {
      out.push_back({name(pkg), e->second, to, c < 0 ? "upgrade" : "downgrade"});
    }
  }
  for (const auto& [pkg, from] : ev)
    if (!nv.count(pkg)) out.push_back({name(pkg), from, "", chosen.count(name(pkg)) ? "reinstall" : "removed"});
  return out;
}

}  // namespace

MigrationPlan make_migration_plan(const layer::Image& o, layer::Image& n, const layer::Flat& e,
                                  const std::map<std::string, layer::RecordSet>& e_records,
                                  const std::set<std::string>& e_auto_installed, const Rules& rules,
                                  const layer::LayerRules& layer_rules) {
  layer::PlanOptions options;
  options.keep_local_changes = true;
  options.report_kept = true;
  auto lp = layer::make_plan(o, n, e, e_records, layer_rules, options);
  auto out = Builder(n, e, rules, layer_rules).build(std::move(lp));
  out.packages = package_changes(o, n, e_records, e_auto_installed);
  for (const auto& op : out.plan.ops)
    if (op.action == OpAction::remove && layer::is_identity(op.path)) out.removed_identity.push_back(op.path);
  return out;
}

}  // namespace mirage::migrate

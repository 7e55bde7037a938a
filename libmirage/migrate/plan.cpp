#include "libmirage/migrate/plan.hpp"

#include <algorithm>
#include <deque>
#include <functional>
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

/// What a path of the migrated system is: its entry, or nullptr when it has none.
using Lookup = std::function<const tree::Entry*(const std::string&)>;

std::deque<std::string> components_of(std::string_view path) {
  std::deque<std::string> out;
  for (size_t i = 0; i < path.size();) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

/// The entry `path` names in the tree `lookup` describes, every symlink on the way
/// followed as the kernel would (at most 40); nullptr when it names none.
const tree::Entry* resolve(const Lookup& lookup, std::string_view path) {
  auto todo = components_of(path);
  std::vector<std::string> done;
  const tree::Entry* at = lookup("/");
  for (int hops = 0; !todo.empty() && at;) {
    std::string name = std::move(todo.front());
    todo.pop_front();
    if (name == ".") continue;
    if (name == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    std::string p;
    for (const auto& d : done) p += "/" + d;
    p += "/" + name;
    at = lookup(p);
    if (!at || at->kind != tree::Kind::symlink) {
      done.push_back(std::move(name));
      continue;
    }
    if (++hops > 40 || at->target.empty()) return nullptr;
    auto target = components_of(at->target);
    todo.insert(todo.begin(), target.begin(), target.end());
    if (at->target.front() == '/') done.clear();
    at = lookup("/");
  }
  return at;
}

constexpr std::string_view k_local_units = "/etc/systemd/system/";

/// Whether `path` is an enablement link's place: a unit's alias in /etc/systemd/system
/// or its entry in a *.wants/, *.requires/ or *.upholds/ directory there.
bool enablement_place(const std::string& path) {
  if (!path.starts_with(k_local_units)) return false;
  std::string_view rest = std::string_view(path).substr(k_local_units.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return rest.find('.') != std::string_view::npos;
  std::string_view dir = rest.substr(0, slash);
  return rest.find('/', slash + 1) == std::string_view::npos &&
         (dir.ends_with(".wants") || dir.ends_with(".requires") || dir.ends_with(".upholds"));
}

/// The unit an enablement link `path` -> `target` enables, when the migrated system
/// (`lookup`) has it: the target itself, else the unit's name (or its template's,
/// "getty@.service" for "getty@tty1.service") in the unit directories.
bool unit_exists(const Lookup& lookup, const std::string& path, const std::string& target) {
  auto is_unit = [&](const std::string& p) {
    auto* e = resolve(lookup, p);
    return e && e->kind == tree::Kind::file;
  };
  std::string dir = path.substr(0, path.rfind('/'));
  if (is_unit(target.starts_with("/") ? target : dir + "/" + target)) return true;
  std::set<std::string> names{path.substr(path.rfind('/') + 1), target.substr(target.rfind('/') + 1)};
  for (auto name : std::set<std::string>(names))
    if (size_t at = name.find('@'), dot = name.rfind('.'); at != std::string::npos && dot != std::string::npos && dot > at)
      names.insert(name.substr(0, at + 1) + name.substr(dot));
  for (const char* units : {"/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system",
                            "/lib/systemd/system"})
    for (const auto& name : names)
      if (is_unit(std::string(units) + "/" + name)) return true;
  return false;
}

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
    drop_dangling_enablement();
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

  /// An enablement link of the endpoint (enablement_place) that would stay while the
  /// unit it enables is nowhere in the migrated system (not carried under
  /// /etc/systemd/system, not in the new release) goes, reported by path: a dangling
  /// enablement is not carried. A mask (a link to /dev/null) is not an enablement.
  void drop_dangling_enablement() {
    std::map<std::string, const tree::Entry*> written;
    std::set<std::string> removed;
    for (const auto& op : m_writes) written[op.path] = &op.entry;
    for (const auto& op : m_removes) removed.insert(op.path);
    Lookup lookup = [&](const std::string& p) -> const tree::Entry* {
      if (auto it = written.find(p); it != written.end()) return it->second;
      if (removed.count(p)) return nullptr;
      if (auto it = m_e.find(p); it != m_e.end()) return &it->second;
      auto it = m_n.entries.find(p);
      return it == m_n.entries.end() ? nullptr : &it->second;
    };
    std::vector<std::pair<std::string, const tree::Entry*>> dangling;
    for (auto it = m_e.lower_bound(std::string(k_local_units)); it != m_e.end() && it->first.starts_with(k_local_units);
         ++it) {
      const auto& [p, ee] = *it;
      if (ee.kind != tree::Kind::symlink || ee.target == "/dev/null" || !enablement_place(p) || lookup(p) != &ee) continue;
      if (!unit_exists(lookup, p, ee.target)) dangling.emplace_back(p, &ee);
    }
    for (const auto& [p, ee] : dangling) {
      std::erase_if(m_out.decisions, [&](const PathDecision& d) { return d.path == p; });
      auto x = m_rules.explain(p);
      x.reason = "enables " + ee->target + ", a unit the migrated system does not have: a dangling enablement is not carried";
      remove(p, *ee, x);
      m_out.dangling_enablement.push_back(p);
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

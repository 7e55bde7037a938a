#pragma once
// The migration plan: what makes the endpoint E (on the old base O) into the new base N
// with the migration rules (rules.hpp) deciding per path who wins. It starts from the
// layer plan of O -> N over E (layer/plan.hpp: 3-way for /etc, records merged, account
// clashes remapped, identity and user area never written) and then, per path, by
// Rules::explain:
//   keep-endpoint, keep-in-place   E's version stays wherever E has one (no write, no
//                                  removal); N's is created only where E has none
//   merge-3way, merge-records      the layer plan's 3-way outcome (PATH.mirage-local on
//                                  conflict; records merged)
//   take-new, not carried          N's version; a local change is not kept; a path only
//                                  E has is removed (the old system keeps it under
//                                  /old-root/<id>/, which the caller links first)
// Identity paths the rules do not carry (the DSA host keys) are removed too, and so is
// an enablement link of the endpoint's (/etc/systemd/system/*.wants/X, an alias there)
// whose unit the migrated system has nowhere: carried units under /etc/systemd/system,
// the new release's in /usr/lib/systemd/system, /lib/... (a dangling enablement). Ops are
// ordered as the apply wants them: writes parents first, then removes children first.
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/layer/plan.hpp"
#include "libmirage/migrate/rules.hpp"

namespace mirage::migrate {

/// One path's row in the report (and the dry run): what the plan does and why.
struct PathDecision {
  std::string path;
  std::string op;         ///< the plan's action ("replace", "remove", "keep", ...)
  std::string component;  ///< "" when no component claims it
  std::string rule;       ///< the rules' action, or "not-carried"
  std::string why;
};
void to_json(nlohmann::json& j, const PathDecision& d);

struct MigrationPlan {
  layer::Plan plan;                       ///< for layer::apply
  std::vector<PathDecision> decisions;    ///< every path an op or a kept path concerns
  std::vector<std::string> removed_identity;  ///< identity paths not carried (DSA keys)
  /// Enablement links not carried: the unit they enable is not in the migrated system.
  std::vector<std::string> dangling_enablement;
  /// Per package of the endpoint's or the new release's database: "install",
  /// "upgrade", "downgrade" (to the new release's), "removed" (the old base had it, the
  /// new one has not, nor did the user choose it: migrate/packages.hpp), "reinstall"
  /// (the user chose it: installed again from the new release).
  std::vector<layer::PackageChange> packages;
};

/// `e_records`: the endpoint's merge-driver files, parsed; `e_auto_installed`: the
/// packages apt marked automatic there. `n` may be changed (accounts remapped), as in
/// layer::make_plan.
MigrationPlan make_migration_plan(const layer::Image& o, layer::Image& n, const layer::Flat& e,
                                  const std::map<std::string, layer::RecordSet>& e_records,
                                  const std::set<std::string>& e_auto_installed, const Rules& rules,
                                  const layer::LayerRules& layer_rules);

/// Whether the old system keeps `path` under /old-root/<id>/: every path of E but the
/// root, the ones the rules keep in place and the layer rules' user area.
bool goes_to_old_root(const Rules& rules, const layer::LayerRules& layer_rules, const std::string& path);

}  // namespace mirage::migrate

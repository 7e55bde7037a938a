#pragma once
// The 3-way apply plan (DESIGN.md §5): O the image the device was last given, N the
// new one, E the endpoint now (its snapshot taken just before). For every path of the
// machine area:
//   E == N                         nothing (no bytes move; metadata only when only that differs)
//   in N, E differs                write N, except under /etc where E changed and N did
//                                  not (kept), and where both changed (N written, E kept
//                                  as PATH.mirage-local)
//   in O, not in N                 removed (a locally changed /etc file is kept aside as
//                                  PATH.mirage-local); a directory only once empty
//   in neither                     the endpoint's own: kept (removed with remove_user_apps)
// Merge-driver files follow the same rules record by record. The user area, identity
// paths and do-not-override paths the endpoint has are never written.
#include <cstdint>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/layer/image.hpp"
#include "libmirage/layer/rules.hpp"
#include "libmirage/util/digest.hpp"

namespace mirage::layer {

enum class Action {
  create,        ///< E lacks it
  replace,       ///< E has another version (content or kind)
  metadata,      ///< same content, other owner/mode/xattrs/times
  remove,        ///< dropped by the layers (or user-installed, with remove_user_apps)
  keep_local,    ///< /etc change the layer did not touch
  keep_user,     ///< the endpoint's own (reported only with remove_user_apps off)
  merge,         ///< a merge-driver file whose records change
};
std::string_view action_name(Action a);

struct Op {
  Action action = Action::create;
  std::string path;
  tree::Entry entry;           ///< N's entry (create, replace, metadata, merge)
  bool save_local = false;     ///< keep E's version as PATH.mirage-local first
  std::string content;         ///< merge: the merged file
  uint64_t fetch_bytes = 0;    ///< bytes of chunks the endpoint lacks
  uint64_t local_bytes = 0;    ///< bytes found in the endpoint's own files
};

struct PackageChange {
  std::string package, from, to, change;  ///< change: downgrade, upgrade, install, remove, user-removed
};

struct PlanOptions {
  bool keep_local_changes = true;  ///< false for enforce: every layer path back
  bool remove_user_apps = false;
  bool report_kept = false;        ///< list keep ops too (dry runs)
};

struct Plan {
  std::vector<Op> ops;  ///< writes parents first, then removes children first
  std::map<std::string, MergeResult> merges;
  IdMap new_ids;        ///< ids given to layer accounts that clashed here (apply through)
  std::vector<PackageChange> packages;
  std::vector<Conflict> conflicts;
  uint64_t fetch_bytes = 0, local_bytes = 0;
  std::map<std::string, uint64_t> counts;  ///< per action name
};
nlohmann::json plan_json(const Plan& p, bool with_paths);

using ChunkSet = std::unordered_set<util::Digest, util::DigestHash>;
/// Counts a file write's bytes: its chunks found in `here` (the endpoint's own) as
/// local, the others as fetched once each across the plan (`counted`); adds both to
/// `plan`'s totals.
void count_bytes(Op& op, const ChunkSet& here, ChunkSet& counted, Plan& plan);

/// `e_records` are the endpoint's merge-driver files, parsed. `n` may be changed
/// (its entries are translated when accounts are remapped).
Plan make_plan(const Image& o, Image& n, const Flat& e, const std::map<std::string, RecordSet>& e_records,
               const LayerRules& rules, const PlanOptions& options);

/// Parses the merge-driver files found in `e` (given their contents).
bool same_content(const tree::Entry& a, const tree::Entry& b);
bool same_metadata(const tree::Entry& a, const tree::Entry& b);

}  // namespace mirage::layer

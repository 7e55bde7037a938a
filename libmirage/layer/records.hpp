#pragma once
// Merge drivers: files that several parties write record by record, merged per record
// rather than per file, so packages a user installed stay in /var/lib/dpkg/status and
// accounts a user made stay in /etc/passwd while layers add and update theirs.
//
//   /var/lib/dpkg/status        stanzas (blank-line separated), keyed by Package:Architecture
//   /etc/passwd group shadow gshadow subuid subgid
//                               lines, keyed by the first ':' field (the name)
//   /var/lib/dpkg/statoverride  lines "owner group mode path", keyed by path
//
// A record keeps its exact text (with its newline), so an untouched record is written
// back byte for byte.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirage::layer {

enum class RecordFormat { dpkg_status, colon_lines, statoverride };

struct Record {
  std::string key;
  std::string text;  ///< the record as in the file, ending in "\n"
  bool operator==(const Record&) const = default;
};
using RecordSet = std::vector<Record>;

/// What the plan does with a merge-driver file beyond the 3-way merge of its records.
enum class DriverRole {
  records,   ///< records only
  packages,  ///< the package database: package changes reported, user apps removable
  users,     ///< accounts: a layer's uid taken on the endpoint gets a free one
  groups,    ///< groups: likewise for gids
};
/// One row of the merge-driver table: the files matching `pattern` (fnmatch, with
/// FNM_PATHNAME) are merged record by record in `format`.
struct MergeDriver {
  std::string pattern;
  RecordFormat format;
  DriverRole role = DriverRole::records;
  uint32_t mode = 0644;  ///< of a file neither the endpoint nor a layer has (root's)
};
/// The table, in order (the first row that matches a path is its driver). A new driver
/// (e.g. an OS migration's) is a row here; nothing else chooses by path.
const std::vector<MergeDriver>& merge_drivers();
/// The driver of `path`, or nullptr for a file merged as a whole.
const MergeDriver* merge_driver(std::string_view path);
/// The files the drivers name (rows without wildcards), as root-relative absolute paths:
/// what an endpoint reads from disk or a tree to merge.
const std::vector<std::string>& merge_paths();
/// The format of a merge-driver file, or nullopt for any other path.
std::optional<RecordFormat> merge_format(std::string_view path);

/// Parses a merge-driver file; throws Error(integrity) naming `what` on a record
/// without a key or a key given twice.
RecordSet parse_records(RecordFormat format, std::string_view text, const std::string& what);
std::string format_records(RecordFormat format, const RecordSet& records);

/// What an app layer changes in a merge-driver file.
struct RecordDelta {
  RecordSet upsert;                 ///< records added or changed, in `after` order
  std::vector<std::string> remove;  ///< keys removed
  bool empty() const { return upsert.empty() && remove.empty(); }
};
void to_json(nlohmann::json& j, const RecordDelta& d);
/// Parses a delta written by to_json (keys come from the record texts).
RecordDelta delta_from_json(RecordFormat format, const nlohmann::json& j, const std::string& what);

RecordDelta diff_records(const RecordSet& before, const RecordSet& after);
/// Replaces records in place, appends new ones, drops removed keys.
void apply_delta(RecordSet& set, const RecordDelta& delta);

/// The 3-way merge of one file, record by record (DESIGN.md §5): o the records last
/// given, n the new image's, e the endpoint's. A record in n replaces e's unless
/// `keep_local` and e changed it while n did not (o == n, or o lacks it: a first
/// assignment takes what the endpoint has as its own); in o but not n is removed;
/// in neither is the endpoint's own and kept. New records are appended in n's order.
struct MergeResult {
  RecordSet merged;
  std::vector<std::string> added, replaced, removed, kept_local;
  bool changed() const { return !added.empty() || !replaced.empty() || !removed.empty(); }
};
MergeResult merge3(const RecordSet& o, const RecordSet& n, const RecordSet& e, bool keep_local);

/// A field of a dpkg stanza ("Version"), or "" when absent.
std::string stanza_field(std::string_view stanza, std::string_view field);

/// Compares two Debian versions the way dpkg does (epoch, upstream, revision; '~'
/// sorts before everything). <0, 0, >0.
int compare_versions(std::string_view a, std::string_view b);

/// Accounts a layer brings whose uid (or group whose gid) is already taken on the
/// endpoint by another name get a free id; `passwd`/`group` are the merged files and
/// `new_users`/`new_groups` the names the merge added. A free id is also none of
/// `retired` (ids_in of the endpoint's and the old base's accounts: an account the
/// merge drops may still own files, in /home, /srv, /old-root). Returns old → new ids.
struct IdMap {
  std::map<uint32_t, uint32_t> uid, gid;
  bool empty() const { return uid.empty() && gid.empty(); }
};
void to_json(nlohmann::json& j, const IdMap& m);
void from_json(const nlohmann::json& j, IdMap& m);
struct IdSets {
  std::set<uint32_t> uid, gid;
};
/// Every uid of `passwd` and every gid of `group` and of `passwd`'s primary groups.
IdSets ids_in(const RecordSet& passwd, const RecordSet& group);
IdMap remap_clashes(RecordSet& passwd, RecordSet& group, const std::set<std::string>& new_users,
                    const std::set<std::string>& new_groups, const IdSets& retired = {});
/// Rewrites the uid/gid fields of the named records through `map` (used to translate
/// a layer's accounts to the ids they were given on this endpoint).
void translate_ids(RecordSet& passwd, RecordSet& group, const IdMap& map);

}  // namespace mirage::layer

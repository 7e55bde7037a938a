#pragma once
// Layers and composed images.
//
// A layer version is a tree (stored like a snapshot's) plus a manifest: its kind, the
// paths it deletes (whiteouts), directories whose earlier contents it replaces
// (opaque), its record deltas for merge-driver files, the base layer it was captured
// on, and, for a driver profile, the inventory rules it matches. Merge-driver files
// are carried as records, never as file content; their tree entries give only the
// file's metadata.
//
// An image is the flat view of one or more layers composed in order (base, then
// matching driver profiles, then app layers; a later layer wins a path, and a path
// two app layers both bring differently is a conflict). The apply compares three.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/layer/records.hpp"
#include "libmirage/materialize/restorer.hpp"
#include "libmirage/scan/scanner.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::layer {

using util::Digest;

/// Root-relative absolute path ("/" for the root) → entry; the root's entry has an
/// empty name. A directory's `subtree` is not meaningful here.
using Flat = std::map<std::string, tree::Entry>;

/// Reads a whole tree into a flat map, fetching each level's trees in one batch.
Flat flatten(materialize::ObjectSource& source, const tree::Entry& root);
/// The verified content of a file entry.
std::string read_content(materialize::ObjectSource& source, const tree::Entry& file, const std::string& path);
/// Encodes the tree objects of `flat` (which must hold "/" and every ancestor of
/// every path), uploads those the store lacks, and returns the root entry (its
/// `subtree` is the root tree).
tree::Entry store_flat(Flat flat, scan::ChunkSink& sink);

enum class LayerKind { base, app, driver };
std::string_view kind_name(LayerKind k);

struct Layer {
  std::string name;
  uint32_t version = 0;
  LayerKind kind = LayerKind::base;
  tree::Entry root;                              ///< root entry; root.subtree is the tree
  std::vector<std::string> whiteouts;            ///< paths the layer deletes
  std::vector<std::string> opaque;               ///< dirs whose earlier contents it drops
  std::map<std::string, nlohmann::json> records; ///< merge file → RecordDelta JSON
  std::vector<std::string> do_not_override;      ///< rules: written only where absent
  std::string captured_on;                       ///< app: the base "NAME@VER", may be empty
  std::map<std::string, std::string> match;      ///< driver: inventory key → glob
  int64_t created_at = 0;
  std::string ref() const { return name + "@" + std::to_string(version); }
};
/// The manifest (everything but name/version/created_at, which the catalog holds).
nlohmann::json manifest_json(const Layer& l);
/// Parses and validates a manifest; throws Error(integrity) naming `what`.
void parse_manifest(const nlohmann::json& j, Layer& l, const std::string& what);
/// True when a driver profile's rules all match the device inventory.
bool matches_inventory(const Layer& driver, const nlohmann::json& inventory);
/// Splits "NAME" or "NAME@VER" (VER 0 when absent); throws Error(usage).
std::pair<std::string, uint32_t> parse_ref(const std::string& ref);

struct Conflict {
  std::string path, first, second;  ///< the two layers; `second` wins
};

struct Image {
  Flat entries;
  std::map<std::string, std::string> owner;  ///< path → layer ref
  std::map<std::string, RecordSet> records;  ///< merge file → composed records
  std::vector<std::string> do_not_override;
  std::vector<Conflict> conflicts;
  std::vector<std::string> layers;           ///< refs, in composition order
};
void to_json(nlohmann::json& j, const Conflict& c);

/// Composes layers (already in order) with their flattened trees.
Image compose(const std::vector<std::pair<const Layer*, const Flat*>>& layers);
/// Rewrites owners of entries and account records through the endpoint's id map.
void translate(Image& image, const IdMap& map);

}  // namespace mirage::layer

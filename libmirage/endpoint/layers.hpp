#pragma once
// The layer flows: capturing base, app and driver layers; planning and carrying out
// an order on an endpoint (called by centralize); rendering an image into a directory.
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/endpoint/transfer.hpp"
#include "libmirage/layer/apply.hpp"
#include "libmirage/layer/rules.hpp"
#include "libmirage/util/crash_point.hpp"

namespace mirage::endpoint {

struct CaptureOptions {
  layer::LayerKind kind = layer::LayerKind::base;
  std::string name;
  std::filesystem::path root;                       ///< base/driver from a directory
  std::string from_device;                          ///< base/app from a reference device's snapshots
  std::filesystem::path before_root, after_root;    ///< app, CI form
  std::string on_base;                              ///< app: the base it was captured on
  std::map<std::string, std::string> match;         ///< driver: inventory key → glob
  layer::LayerRules rules = layer::LayerRules::defaults();
  unsigned threads = 2;
  std::function<void(const scan::Progress&)> progress;
  ConnectionFactory more_connections;
};

/// Captures and stores the next version of a layer; returns it as layer.list shows it,
/// plus "stats" (paths, bytes, whiteouts, record changes).
nlohmann::json capture(Client& client, const CaptureOptions& options);
/// Records a reference device's latest snapshot as the "before" of an app capture.
nlohmann::json capture_begin(Client& client, const std::string& device);

/// The endpoint's local copy of tree objects (its own snapshots' and the layers' it was
/// given), so an apply fetches only the trees that changed. SQLite in the state
/// directory; trees are immutable and named by their SHA-256, and every read is verified.
/// A cache that cannot be opened is left out (with a warning); one grown past 512 MiB is
/// started afresh.
class TreeCache {
 public:
  explicit TreeCache(const std::filesystem::path& file);
  ~TreeCache();
  std::optional<std::vector<uint8_t>> get(const util::Digest& id);
  void put(const std::vector<std::pair<util::Digest, std::vector<uint8_t>>>& trees);

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

/// An object source that answers from a TreeCache first and keeps what it fetches
/// (use it for trees only).
class CachingSource : public materialize::ObjectSource {
 public:
  CachingSource(materialize::ObjectSource& inner, TreeCache& cache) : m_inner(inner), m_cache(cache) {}
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override;
  uint64_t bytes_received() const override { return m_inner.bytes_received(); }

 private:
  materialize::ObjectSource& m_inner;
  TreeCache& m_cache;
};

/// A layer version with its tree read into a flat map (cached per client run).
struct LoadedLayer {
  layer::Layer layer;
  layer::Flat flat;
};
class LayerCache {
 public:
  LayerCache(Client& client, materialize::ObjectSource& source) : m_client(client), m_source(source) {}
  const LoadedLayer& get(const std::string& ref);
  /// Composes refs in order, translating owners through `ids`.
  layer::Image compose(const std::vector<std::string>& refs, const layer::IdMap& ids);
  /// JSON bytes of the layer manifests fetched.
  uint64_t manifest_bytes() const { return m_manifest_bytes; }

 private:
  Client& m_client;
  materialize::ObjectSource& m_source;
  std::map<std::string, LoadedLayer> m_layers;
  uint64_t m_manifest_bytes = 0;
};

/// A snapshot's root entry (snapshot.list's "root").
tree::Entry snapshot_root(const nlohmann::json& snapshot);
/// Merge-driver files of a flat tree, parsed, their content read from the store.
std::map<std::string, layer::RecordSet> records_from_store(materialize::ObjectSource& source, const layer::Flat& flat);
/// Merge-driver files of an endpoint, parsed from disk (never through a symlink).
std::map<std::string, layer::RecordSet> records_from_disk(const std::filesystem::path& root);
/// The id map a device was given ({"id_map"}), empty when none.
layer::IdMap id_map_of(const nlohmann::json& given);
/// The "layers" refs of an order spec or a given.
std::vector<std::string> refs_of(const nlohmann::json& j);

/// Plan options for an order ({"type": assign|enforce|provision, "remove_user_apps"}).
layer::PlanOptions plan_options(const nlohmann::json& spec);

/// The plan for an order's spec on a device, against its latest snapshot (a dry run:
/// nothing changes). Returns plan_json with the paths.
nlohmann::json dry_run(Client& client, const std::string& device, const nlohmann::json& spec, const nlohmann::json& given);

struct ApplyOrderOptions {
  std::filesystem::path root;
  std::string device_id;
  std::filesystem::path state_dir;
  nlohmann::json snapshot;  ///< the protecting snapshot just taken (its root is E)
  std::function<void(uint64_t, uint64_t)> progress;
  ConnectionFactory more_connections;
  util::CrashHook crash_point;  ///< crash tests: called at "apply_stage" N and "apply_step" N (and "stream_fill" 0)
  /// A streamed revert's choice of placeholders (layer::ApplyOptions::placeholder).
  std::function<bool(const std::string&, const tree::Entry&)> placeholder;
};
/// Carries out `plan` from E with the journaled apply as an order does (its journal in the
/// state directory, the crash hooks), warns its warnings, and records what it installed
/// in the files cache (the snapshot after it need not read those files). A layer order
/// and a revert both run through it.
layer::ApplyResult apply_plan(const layer::Plan& plan, const layer::Flat& e, materialize::ObjectSource& source,
                              const ApplyOrderOptions& options);
/// Carries out `next` (order.next's reply: order, given) and reports the outcome to
/// the server. Returns the report. A failure is reported and rethrown.
nlohmann::json apply_order(Client& client, const nlohmann::json& next, const ApplyOrderOptions& options);

/// Runs post-layer hooks when an earlier run left them pending; true when none are left.
bool run_pending_hooks(const std::filesystem::path& root, const std::filesystem::path& state_dir, nlohmann::json* report);

/// Composes `refs` into `to` (an empty or missing directory) with full metadata.
nlohmann::json render(Client& client, const std::vector<std::string>& refs, const std::filesystem::path& to,
                      std::function<void(uint64_t, uint64_t)> progress, ConnectionFactory more_connections);

/// Renders into a temporary directory and writes it to stdout as a tar stream (GNU tar
/// with numeric owners, xattrs and ACLs), then removes the directory.
nlohmann::json render_tar(Client& client, const std::vector<std::string>& refs,
                          std::function<void(uint64_t, uint64_t)> progress, ConnectionFactory more_connections);

}  // namespace mirage::endpoint

#pragma once
// The endpoint agent's two flows: centralize (register, recover an interrupted apply,
// scan, upload, commit, carry out a queued order) and restore (materialize paths of a
// snapshot).
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/endpoint/transfer.hpp"
#include "libmirage/materialize/restorer.hpp"
#include "libmirage/scan/scanner.hpp"
#include "libmirage/util/crash_point.hpp"

namespace mirage::endpoint {

struct CentralizeOptions {
  std::filesystem::path root = "/";
  std::string device_id;
  std::filesystem::path state_dir;  ///< holds the files cache
  int compression_level = 3;
  unsigned threads = 2;
  std::function<void(const scan::Progress&)> progress;
  std::function<void(uint64_t, uint64_t)> apply_progress;
  ConnectionFactory more_connections;  ///< may be empty: then everything uses one connection
  util::CrashHook crash_point;  ///< crash tests: "before_commit" 0, and the apply's points
};

struct CentralizeResult {
  std::string device_id;
  std::string state;  ///< pending, accepted, rejected, reenroll (waits for an admin's re-enrolment)
  std::string message;  ///< with reenroll: the server's word on it (the fingerprint to compare)
  nlohmann::json snapshot;  ///< the committed snapshot, when accepted (after an apply: the one after it)
  nlohmann::json order;         ///< the order carried out (its report), or pending hooks
  nlohmann::json protected_by;  ///< the pinned snapshot taken before the order
  scan::ScanStats stats;
  /// Set when a committed snapshot left entries out (stats.unreadable of the first such
  /// one): "snapshot ID is incomplete: N entries could not be read (first: PATH: REASON)".
  std::string incomplete;
  double seconds = 0;
};
void to_json(nlohmann::json& j, const CentralizeResult& r);

/// Registers the device if new; when it is accepted, scans and commits a snapshot (an
/// incomplete one too: see CentralizeResult::incomplete). A pending device gives state
/// "pending" and no snapshot (also when the server refuses its credential as pending);
/// a rejected one throws Error(permission).
CentralizeResult centralize(Client& client, const CentralizeOptions& options);

/// Restores `paths` of a snapshot (as client::resolve_snapshot returns it) into `to`
/// (see materialize::restore); large chunk fetches use two further connections from
/// `more_connections` when given.
materialize::RestoreStats restore(Client& client, const nlohmann::json& snapshot, const std::vector<std::string>& paths,
                                  const std::filesystem::path& to, std::function<void(uint64_t)> progress,
                                  ConnectionFactory more_connections = nullptr,
                                  materialize::Overwrite overwrite = materialize::Overwrite::always);

/// Records a restore done in the server's transaction log (events.report, event
/// restore.done): the snapshot, the paths restored (the first 64, the server's bound, and
/// how many in all), `to` made absolute and this machine's hostname, the counts. Returns
/// the event's detail; throws what the call throws.
nlohmann::json report_restore(Client& client, const nlohmann::json& snapshot, const std::vector<std::string>& paths,
                              const std::filesystem::path& to, const materialize::RestoreStats& stats);

}  // namespace mirage::endpoint

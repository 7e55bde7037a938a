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
#include "libmirage/materialize/stream.hpp"
#include "libmirage/policy/upload_policy.hpp"
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
  nlohmann::json stream;        ///< a streamed revert's fill (revert.hpp: fill_streamed), when one ran
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
                                  const std::filesystem::path& to, std::function<void(uint64_t, uint64_t)> progress,
                                  ConnectionFactory more_connections = nullptr,
                                  materialize::Overwrite overwrite = materialize::Overwrite::always);

/// The file bytes restore() of `paths` writes (materialize::bytes_under): a progress
/// total, read from the snapshot's trees below them.
uint64_t restore_bytes(Client& client, const nlohmann::json& snapshot, const std::vector<std::string>& paths);
struct StreamOptions {
  /// The minimal set (restore_first) and the user area, filled first.
  policy::UploadPolicy policy = policy::UploadPolicy::defaults();
  uint64_t bytes_per_second = 0;  ///< the background fill's limit (0: none)
  std::function<void(uint64_t, uint64_t)> progress;  ///< bytes and files of the minimal set written
  /// Called once the minimal set and every placeholder are in place (the tree is usable).
  std::function<void(const materialize::RestoreStats&, const materialize::Streamer&)> usable;
  std::function<void(const materialize::StreamProgress&)> fill_progress;
};
struct StreamResult {
  materialize::RestoreStats stats;  ///< the minimal set's pass (placeholders counted)
  materialize::StreamProgress fill;
  bool on_demand = false;  ///< reads of a placeholder waited for it (fanotify)
  std::string why_not;     ///< when not
  double usable_seconds = 0, seconds = 0;
};
void to_json(nlohmann::json& j, const StreamResult& r);

/// A streaming restore (materialize/stream.hpp) of `paths` into `to`: the minimal set
/// whole and the rest as placeholders, then the placeholders filled, the user area's
/// newest first, reads first. Run again after a kill, it refills what is still a
/// placeholder and keeps what is complete. Needs `more_connections` (each filler has its
/// own); throws Error(usage) without.
StreamResult restore_streaming(Client& client, const nlohmann::json& snapshot, const std::vector<std::string>& paths,
                               const std::filesystem::path& to, ConnectionFactory more_connections,
                               const StreamOptions& options);

/// Records a restore done in the server's transaction log (events.report, event
/// restore.done): the snapshot, the paths restored (the first 64, the server's bound, and
/// how many in all), `to` made absolute and this machine's hostname, the counts. Returns
/// the event's detail; throws what the call throws.
/// A streaming restore reports stage "usable" (files_left, bytes_left still to fill) and
/// then "done" (event restore.usable, restore.done).
nlohmann::json report_restore(Client& client, const nlohmann::json& snapshot, const std::vector<std::string>& paths,
                              const std::filesystem::path& to, const materialize::RestoreStats& stats,
                              const std::string& stage = "done", uint64_t files_left = 0, uint64_t bytes_left = 0);

}  // namespace mirage::endpoint

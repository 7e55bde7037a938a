#pragma once
// The endpoint and admin side of the protocol: typed calls over a transport, and the
// two flows of the foundation, centralize (register, scan, upload, commit) and
// restore (resolve a snapshot, materialize paths).
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/proto/transport.hpp"
#include "libmirage/scan/scanner.hpp"
#include "libmirage/util/crash_point.hpp"

namespace mirage::client {

class Client {
 public:
  explicit Client(std::unique_ptr<proto::Transport> transport) : m_transport(std::move(transport)) {}
  /// Calls `method`; throws the server's error (with its kind) on failure.
  nlohmann::json call(const std::string& method, nlohmann::json params = nlohmann::json::object());
  /// As call(), with a binary part each way.
  proto::Reply call_binary(const std::string& method, nlohmann::json params, std::vector<uint8_t> binary);
  proto::Transport& transport() { return *m_transport; }

 private:
  std::unique_ptr<proto::Transport> m_transport;
  std::atomic<uint64_t> m_next_id{1};
};

/// DMI product UUID (only when `root` is the real root), else ROOT/etc/machine-id
/// (lowercased); nullopt if neither. The machine-id is read without leaving ROOT (see
/// inventory); one that is not 32 hex digits throws Error(usage), as it names the
/// endpoint's state directory.
std::optional<std::string> detect_device_id(const std::filesystem::path& root);
/// Throws Error(usage) unless `id` is a valid device id (letters, digits, - _ . :, at
/// most 128, not "." or ".."): it names a directory under the endpoint's data dir.
void check_device_id(const std::string& id);
/// Hostname, OS release, architecture and (for the real root) DMI fields. Files under
/// ROOT are opened without leaving it (symlinks resolve inside ROOT), and only small
/// regular files are read: a FIFO, a device or a huge file is skipped with a warning.
nlohmann::json inventory(const std::filesystem::path& root, std::string* hostname);

/// Opens another connection to the same server (upload workers each get their own, so
/// one worker's upload does not wait behind another's on a single pipe), from any
/// thread.
using ConnectionFactory = std::function<std::unique_ptr<Client>()>;

/// The protocol behind the scanner's and the restorer's interfaces. An empty `device`
/// uploads as an admin (layer captures).
std::unique_ptr<scan::ChunkSink> chunk_sink(Client& client, const std::string& device, ConnectionFactory more,
                                            size_t max_connections);
std::unique_ptr<materialize::ObjectSource> object_source(Client& client, ConnectionFactory more);

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
  std::string state;  ///< pending, accepted, rejected
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

/// The device's credential secret (64 hex digits) in STATE/credential, made on first use
/// (mode 0600). The server keeps its SHA-256; once the device is accepted, the bearer
/// token mdc_DEVICE.SECRET lets it sync its own CVD and nothing else.
std::string device_secret(const std::filesystem::path& state_dir);

/// Creates the endpoint state directory if needed and makes it and the files in it
/// private (0700, its own files 0600: file names in trees.db, the credential). Throws
/// Error(usage) for a shared directory (world-writable or sticky, e.g. /tmp), else Error(failed).
void make_state_private(const std::filesystem::path& state_dir);

/// Registers the device if new; when it is accepted, scans and commits a snapshot (an
/// incomplete one too: see CentralizeResult::incomplete). A pending device gives state
/// "pending" and no snapshot (also when the server refuses its credential as pending);
/// a rejected one throws Error(permission).
CentralizeResult centralize(Client& client, const CentralizeOptions& options);

/// The snapshot `spec` names: "latest", an id or unique id prefix, or a date/time
/// (the latest snapshot at or before it). Throws Error(not_found).
nlohmann::json resolve_snapshot(Client& client, const std::string& device, const std::string& spec);

/// Restores `paths` of a snapshot (as returned by resolve_snapshot) into `to`; large
/// chunk fetches use two further connections from `more_connections` when given.
materialize::RestoreStats restore(Client& client, const nlohmann::json& snapshot, const std::vector<std::string>& paths,
                                  const std::filesystem::path& to, std::function<void(uint64_t)> progress,
                                  ConnectionFactory more_connections = nullptr);

}  // namespace mirage::client

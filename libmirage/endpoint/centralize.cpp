#include "libmirage/endpoint/centralize.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <future>
#include <fstream>

#include "libmirage/endpoint/identity.hpp"
#include "libmirage/endpoint/layers.hpp"
#include "libmirage/endpoint/migrate.hpp"
#include "libmirage/endpoint/revert.hpp"
#include "libmirage/layer/apply.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/digest.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;
using util::Digest;

void to_json(json& j, const CentralizeResult& r) {
  j = {{"device_id", r.device_id}, {"state", r.state}, {"seconds", r.seconds}};
  if (!r.message.empty()) j["message"] = r.message;
  if (!r.snapshot.is_null()) {
    j["snapshot"] = r.snapshot;
    j["stats"] = r.stats;
  }
  if (!r.order.is_null()) j["order"] = r.order;
  if (!r.protected_by.is_null()) j["protected_by"] = r.protected_by;
  if (!r.stream.is_null()) j["stream"] = r.stream;
  if (!r.incomplete.empty()) j["incomplete"] = r.incomplete;
}

namespace {

/// One sync at a time on an endpoint state directory: two would both take the same
/// order (the second failing it on the first's apply journal) and write one files cache.
/// A flock on STATE/sync.lock, released when the process ends however it ends; the file
/// holds the holder's pid for the refusal's message.
class SyncLock {
 public:
  SyncLock(const fs::path& state_dir, const std::string& device)
      : m_lock(state_dir / "sync.lock", [&](const std::string& holder) {
          return "another mirage-centralize" + (holder.empty() ? "" : " (pid " + holder + ")") + " is syncing device " +
                 device + " on the state directory " + state_dir.string() + "; try again when it has finished";
        }) {}

 private:
  util::PidLock m_lock;
};

/// A streamed revert's fill (revert.hpp: fill_streamed). One that fails (a chunk damaged
/// in the store, say) does not hold the device's backups up: its files stay placeholders
/// (left out of the snapshot, which is then incomplete), the journal stays and the next
/// sync tries again; only a server that cannot be reached ends the sync.
json fill_or_warn(Client& client, const ApplyOrderOptions& ao, const policy::UploadPolicy& policy) {
  try {
    return fill_streamed(client, ao, policy);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unavailable) throw;
    util::warn(std::string("a streamed revert's placeholders are not all filled: ") + e.what() +
               " (they stay placeholders, left out of snapshots; the next sync tries again)");
    return {{"fill", json::object()}, {"error", e.what()}};
  }
}

/// Registers the device (or refreshes its inventory); its state, "pending" when the
/// server refuses a pending device's credential, "reenroll" (with the server's message)
/// when the device is enrolled and this machine lacks its credential.
std::string register_device(Client& client, const CentralizeOptions& opts, std::string& message) {
  std::string hostname;
  json inv = inventory(opts.root, &hostname);
  const fs::path credential = opts.state_dir / "credential";
  std::error_code ec;
  const bool first = !fs::exists(credential, ec);
  try {
    json dev = client.call("device.register", {{"device_id", opts.device_id},
                                               {"hostname", hostname},
                                               {"inventory", inv},
                                               {"credential_hash", util::sha256_hex(device_secret(opts.state_dir))}});
    return dev.value("state", "pending");
  } catch (const Error& e) {
    // A first registration refused for what it said (a hostname the server will not
    // take) recorded nothing: its new credential goes too, or every later run would
    // present a credential the server never heard of.
    if (first && e.kind() == ErrorKind::usage) fs::remove(credential, ec);
    // The server refuses a pending device's credential as a precondition before any
    // method runs: the same answer as a registration that left it pending.
    if (e.kind() != ErrorKind::precondition) throw;
    if (e.reason() != proto::k_reason_reenroll) return "pending";
    message = e.what();
    return "reenroll";
  }
}

/// The device's upload policy; on the real root, swap files in use are never uploaded.
policy::UploadPolicy upload_policy(Client& client, const CentralizeOptions& opts) {
  auto policy = policy::UploadPolicy::from_json(client.call("policy.get", {{"device_id", opts.device_id}})["policy"]);
  if (is_real_root(opts.root)) {
    std::ifstream swaps("/proc/swaps");
    std::string line;
    std::getline(swaps, line);
    while (std::getline(swaps, line)) {
      auto sp = line.find_first_of(" \t");
      if (sp != std::string::npos && line.rfind("/dev/", 0) != 0) policy.add_unprotected(line.substr(0, sp));
    }
  }
  return policy;
}

/// Scans, uploads and commits one snapshot into `result`; rescans without the files
/// cache once when the server lacks something the cache vouched for.
void take_snapshot(Client& client, const CentralizeOptions& opts, const policy::UploadPolicy& policy, bool pinned,
                   CentralizeResult& result) {
  fs::path cache_file = opts.state_dir / "files.cache";
  bool damaged = false;
  scan::FilesCache cache = scan::FilesCache::load(cache_file, &damaged);
  if (damaged) util::warn("files cache " + cache_file.string() + " is damaged or from another version; reading every file");
  // Two connections a worker: its put in flight in the background and its next question.
  auto sink = chunk_sink(client, opts.device_id, opts.more_connections, 2 * size_t{opts.threads});
  for (int attempt = 0;; ++attempt) {
    scan::ScanOptions so;
    so.root = opts.root;
    so.policy = policy;
    so.cache = attempt == 0 ? &cache : nullptr;
    so.compression_level = opts.compression_level;
    so.threads = opts.threads;
    so.progress = opts.progress;
    std::vector<std::pair<Digest, std::vector<uint8_t>>> trees;
    so.on_tree = [&](const Digest& id, std::span<const uint8_t> data) { trees.emplace_back(id, std::vector<uint8_t>(data.begin(), data.end())); };
    scan::ScanResult scanned = scan::scan(so, *sink);
    json stats = scanned.stats;
    stats.erase("warnings");
    // Tests stop here to leave an upload in flight (chunks sent, no snapshot committed).
    if (opts.crash_point) opts.crash_point("before_commit", 0);
    // While the server checks the snapshot: the new trees go into the local tree cache
    // (an apply reads this snapshot's trees there; they are named by their hash, so they
    // are right to keep whether or not the commit takes them), and the next files cache
    // is encoded (it is written only once the commit is taken: it vouches for uploads).
    auto cached = std::async(std::launch::async, [&] {
      TreeCache(opts.state_dir / "trees.db").put(trees);
      return scanned.next_cache.encode();
    });
    try {
      result.snapshot = client.call("snapshot.commit", {{"device_id", opts.device_id},
                                                        {"tree", scanned.tree.hex()},
                                                        {"root", util::to_hex(tree::encode_entry(scanned.root))},
                                                        {"stats", stats},
                                                        {"pinned", pinned}});
    } catch (const Error& e) {
      // The server lacks something the cache vouched for (e.g. removed by GC): rescan everything.
      cached.wait();
      if (e.kind() == ErrorKind::precondition && attempt == 0 && e.reason() == proto::k_reason_incomplete) {
        util::warn(std::string(e.what()) + "; rescanning without the files cache");
        continue;
      }
      throw;
    }
    auto next_cache = cached.get();
    result.stats = std::move(scanned.stats);
    for (const auto& w : result.stats.warnings) util::warn(w);
    if (result.stats.unreadable > 0 && result.incomplete.empty()) {
      const auto& first = result.stats.unreadable_entries.front();
      result.incomplete = "snapshot " + result.snapshot.value("snapshot_id", std::string()) + " is incomplete: " +
                          std::to_string(result.stats.unreadable) + " entr" +
                          (result.stats.unreadable == 1 ? "y" : "ies") + " could not be read (first: " + first.path +
                          ": " + first.reason + ")";
    }
    try {
      scan::FilesCache::save_encoded(cache_file, next_cache);
    } catch (const Error& e) {
      util::warn(std::string("files cache not saved: ") + e.what());
    }
    return;
  }
}

}  // namespace

CentralizeResult centralize(Client& client, const CentralizeOptions& opts) {
  auto start = std::chrono::steady_clock::now();
  // A mistyped --root is said before anything is made or registered (a pending device
  // with no hostname was left behind for it).
  struct stat root_st;
  if (::stat(opts.root.c_str(), &root_st) != 0)
    throw_errno(errno == ENOENT || errno == ENOTDIR ? ErrorKind::not_found : ErrorKind::failed, "root " + opts.root.string());
  if (!S_ISDIR(root_st.st_mode)) throw Error(ErrorKind::usage, "root " + opts.root.string() + " is not a directory");
  make_state_private(opts.state_dir);
  struct PrivateAfter {  // files made during the sync (trees.db, files.cache, ...) too
    const fs::path& dir;
    ~PrivateAfter() {
      try {
        make_state_private(dir);
      } catch (const Error& e) {
        util::warn(e.what());
      }
    }
  } private_after{opts.state_dir};
  SyncLock lock(opts.state_dir, opts.device_id);
  CentralizeResult result;
  result.device_id = opts.device_id;
  result.state = register_device(client, opts, result.message);
  if (result.state == "rejected") throw Error(ErrorKind::permission, "device " + opts.device_id + ": rejected by an admin");
  if (result.state != "accepted") return result;

  auto policy = upload_policy(client, opts);
  // An apply (or revert) a crash interrupted is finished or rolled back before anything else.
  std::string recovered = layer::recover(opts.root, opts.state_dir / "apply.journal");
  if (recovered != "none") util::warn("an interrupted layer apply was " + std::string(recovered == "resumed" ? "finished" : "rolled back"));
  migration_recovered(opts.state_dir, recovered);
  // An /old-root removal is an event (the server records each once: a crash after the
  // report reports it again).
  OldRootReport report_removal = [&](const json& gone) {
    json params = gone;
    params["type"] = "old_root_removed";
    params["device_id"] = opts.device_id;
    client.call("events.report", params);
    util::log(util::LogLevel::info, "removed /old-root/" + gone["migration_id"].get<std::string>() + " (" +
                                        gone["reason"].get<std::string>() + "; " +
                                        std::to_string(gone["bytes_freed"].get<uint64_t>()) + " bytes freed)");
  };
  ApplyOrderOptions ao;
  ao.root = opts.root;
  ao.device_id = opts.device_id;
  ao.state_dir = opts.state_dir;
  ao.more_connections = opts.more_connections;
  ao.progress = opts.apply_progress;
  ao.crash_point = opts.crash_point;
  // A streamed revert's fill cut short goes on before any scan (which would leave its
  // placeholders out of the snapshot).
  result.stream = fill_or_warn(client, ao, policy);
  json next = client.call("order.next", {{"device_id", opts.device_id}});
  bool has_order = next.contains("order");
  // A queued rollback keeps its /old-root past the retention (a device offline that long
  // rolls back from it, not from the server); the rollback then removes it.
  std::string rolling_back;
  if (has_order && next["order"]["spec"].value("type", "") == "revert")
    rolling_back = next["order"]["spec"].value("migration_id", "");
  expire_old_roots(opts.root, opts.state_dir, std::chrono::system_clock::now(), report_removal, opts.crash_point,
                   rolling_back);

  // With an order queued, this snapshot protects the state before it and is pinned.
  // An order for a snapshot (on request) is carried out by that snapshot itself.
  take_snapshot(client, opts, policy, has_order, result);
  if (has_order && next["order"]["spec"].value("type", "") == "snapshot") {
    std::string order_id = next["order"]["order_id"];
    json report = {{"snapshot_id", result.snapshot["snapshot_id"]}, {"wire_bytes", result.stats.bytes_sent},
                   {"unreadable", result.stats.unreadable}};
    client.call("order.report", {{"order_id", order_id}, {"device_id", opts.device_id}, {"state", "done"}, {"result", report}});
    report["order_id"] = order_id;
    result.order = report;
  } else if (has_order) {
    ao.snapshot = result.snapshot;
    const json& spec = next["order"]["spec"];
    if (spec.value("type", "") == "revert") {
      std::string migration = spec.value("migration_id", "");
      old_root_before_rollback(opts.root, opts.state_dir, migration);
      result.order = revert_order(client, next, ao, policy, [&] { old_root_rolled_back(opts.root, opts.state_dir, migration); });
      result.stream = fill_or_warn(client, ao, policy);  // the device is usable meanwhile
      if (!migration.empty())  // its /old-root goes now (marked above)
        expire_old_roots(opts.root, opts.state_dir, std::chrono::system_clock::now(), report_removal, opts.crash_point);
    } else if (spec.value("type", "") == "migrate") {
      result.order = migrate_order(client, next, ao);
    } else {
      result.order = apply_order(client, next, ao);
    }
    result.protected_by = result.snapshot;
    take_snapshot(client, opts, policy, false, result);  // the state after the apply
  } else {
    json hooks;
    if (!run_pending_hooks(opts.root, opts.state_dir, &hooks)) result.order = {{"hooks", hooks}};
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

materialize::RestoreStats restore(Client& client, const json& snapshot, const std::vector<std::string>& paths,
                                  const fs::path& to, std::function<void(uint64_t, uint64_t)> progress,
                                  ConnectionFactory more_connections, materialize::Overwrite overwrite) {
  materialize::RestoreOptions ro;
  ro.to = to;
  ro.overwrite = overwrite;
  ro.paths = paths;
  ro.root = tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root");
  ro.tree = ro.root.subtree;
  ro.progress = std::move(progress);
  auto source = object_source(client, std::move(more_connections));
  auto stats = materialize::restore(ro, *source);
  stats.wire_bytes = source->bytes_received();
  return stats;
}

uint64_t restore_bytes(Client& client, const json& snapshot, const std::vector<std::string>& paths) {
  auto source = object_source(client, nullptr);
  return materialize::bytes_under(*source, tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root"),
                                  paths);
}

void to_json(json& j, const StreamResult& r) {
  j = {{"restore", r.stats}, {"fill", r.fill}, {"on_demand", r.on_demand}, {"usable_seconds", r.usable_seconds},
       {"seconds", r.seconds}};
  if (!r.on_demand) j["on_demand_why_not"] = r.why_not;
}

StreamResult restore_streaming(Client& client, const json& snapshot, const std::vector<std::string>& paths,
                               const fs::path& to, ConnectionFactory more_connections, const StreamOptions& options) {
  if (!more_connections) throw Error(ErrorKind::usage, "a streaming restore needs connections of its own to the server");
  auto start = std::chrono::steady_clock::now();
  materialize::Streamer::Options so;
  so.to = to;
  so.source = [more_connections] { return own_source(more_connections()); };
  so.rank = [&options](const std::string& path, const tree::Entry&) { return options.policy.in_user_area(path) ? 0 : 1; };
  so.bytes_per_second = options.bytes_per_second;
  so.progress = options.fill_progress;
  materialize::Streamer streamer(std::move(so));

  materialize::RestoreOptions ro;
  ro.to = to;
  ro.overwrite = materialize::Overwrite::if_changed;  // a rerun keeps what is complete
  ro.paths = paths;
  ro.root = tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root");
  ro.tree = ro.root.subtree;
  ro.progress = options.progress;
  ro.placeholder = [&options](const std::string& path, const tree::Entry&) { return !options.policy.restore_first(path); };
  ro.on_placeholder = [&streamer](int dirfd, const std::string& name, const std::string& path, const tree::Entry& e) {
    streamer.add(dirfd, name, path, e);
  };
  auto source = object_source(client, more_connections);
  StreamResult r;
  r.stats = materialize::restore(ro, *source);
  r.stats.wire_bytes = source->bytes_received();
  r.usable_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.on_demand = streamer.on_demand();
  r.why_not = streamer.why_not();
  if (options.usable) options.usable(r.stats, streamer);
  r.fill = streamer.fill();
  for (auto& w : streamer.warnings()) r.stats.warnings.push_back(std::move(w));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

json report_restore(Client& client, const json& snapshot, const std::vector<std::string>& paths, const fs::path& to,
                    const materialize::RestoreStats& stats, const std::string& stage, uint64_t files_left,
                    uint64_t bytes_left) {
  constexpr size_t k_named = 64;  // server::k_max_report_paths: a whole device is "/", a long list is cut
  std::vector<std::string> named(paths.begin(), paths.begin() + std::min(paths.size(), k_named));
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  for (char& c : host)
    if (c && (c < 0x21 || c > 0x7e)) c = '?';  // the server takes printable ASCII
  std::error_code ec;
  fs::path where = fs::absolute(to, ec).lexically_normal();
  return client.call("events.report", {{"type", "restore"},
                                       {"device_id", snapshot.at("device_id")},
                                       {"snapshot_id", snapshot.at("snapshot_id")},
                                       {"bytes_moved", stats.wire_bytes},
                                       {"unique_bytes", stats.bytes},
                                       {"files", stats.files},
                                       {"paths", named},
                                       {"paths_total", paths.size()},
                                       {"to", ec ? to.string() : where.string()},
                                       {"host", host},
                                       {"stage", stage},
                                       {"files_left", files_left},
                                       {"bytes_left", bytes_left}});
}

}  // namespace mirage::endpoint

#pragma once
// The protocol client: typed calls over a proto::Transport, for endpoints and admins
// alike. What an endpoint does with them (scan, upload, orders, apply) is endpoint/.
#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/proto/transport.hpp"
#include "libmirage/util/digest.hpp"
#include "libmirage/util/pool.hpp"

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

/// Opens another connection to the same server (upload workers each get their own, so
/// one worker's upload does not wait behind another's on a single pipe), from any
/// thread.
using ConnectionFactory = std::function<std::unique_ptr<Client>()>;

/// Extra connections to the same server, lent out one call at a time: an idle one, a
/// new one while fewer than `max` exist, else the main one (whose transport
/// serializes calls). A connection that cannot be opened turns the pool off.
class ConnectionPool {
 public:
  ConnectionPool(Client& main, ConnectionFactory more, size_t max);

  class Lease {
   public:
    explicit Lease(ConnectionPool& pool) : m_main(pool.m_main), m_lease(pool.m_extra) {}
    Client& client() { return m_lease.get() ? *m_lease.get() : m_main; }

   private:
    Client& m_main;
    util::Pool<Client>::Lease m_lease;
  };

 private:
  Client& m_main;
  util::Pool<Client> m_extra;
};

// Chunk transfer (chunks.*), split into requests of a bounded number of ids.

/// chunks.missing: for each id, whether the server lacks it.
std::vector<bool> chunks_missing(Client& client, std::span<const util::Digest> ids);
/// chunks.put: stores encoded records; an empty `device` uploads as an admin (captures).
void chunks_put(Client& client, const std::string& device, std::vector<uint8_t> records);
/// chunks.get: the encoded records of `ids`, in order.
std::vector<uint8_t> chunks_get(Client& client, std::span<const util::Digest> ids);
/// chunks.delta: for (base, target) id pairs, the delta records.
std::vector<uint8_t> chunks_delta(Client& client, std::span<const util::Digest> pairs);

// What --device and --snapshot name: every command that takes them resolves them here.

/// What resolve_device does with a spec that names no registered device.
enum class Unregistered {
  refuse,  ///< Error(not_found)
  keep,    ///< `spec` itself: the id of a device gone since (its events stay)
};

/// The device id `spec` names: a registered device id, else the device of that name
/// (device.rename keeps names unique), else the hostname of exactly one device (ASCII
/// case-insensitive). Throws Error(usage) listing the ids when several devices have
/// that hostname, Error(not_found) when none has (unless `unregistered` is keep). A
/// caller that may not look devices up (a device's own credential) gets `spec` back: it
/// names only itself.
std::string resolve_device(Client& client, const std::string& spec, Unregistered unregistered = Unregistered::refuse);
/// resolve_device of each, in order (the ids of --device given several times).
std::vector<std::string> resolve_devices(Client& client, const std::vector<std::string>& specs);

/// The snapshot `spec` names on `device` (an id or a hostname: resolve_device), as
/// snapshot.list lists it (its "device_id" is the device's id): see pick_snapshot.
nlohmann::json resolve_snapshot(Client& client, const std::string& device, const std::string& spec);

/// The snapshot resolve_snapshot picks from a device's list (oldest first) at
/// util::now_ns(): for "latest" (or empty) the newest; for a time (util::parse_time_before:
/// "yesterday", "2h", "3d", "1w", "2026-11-30", "2026-11-30 14:00", UTC) the newest taken
/// at or before it; else the one whose id is or starts with `spec`. A spec that reads as a
/// time is a time ("3d" never an id prefix: type more of the id). Throws Error(not_found)
/// when the list is empty, nothing matches, or the time is before the first snapshot;
/// Error(usage) when several ids start with `spec`, listing them.
nlohmann::json pick_snapshot(const nlohmann::json& list, const std::string& device, const std::string& spec);

}  // namespace mirage::client

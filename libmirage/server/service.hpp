#pragma once
// The server: one registry of methods (registry.hpp) behind both transports (stdio
// and HTTP). Each request runs on a catalog connection of its own, leased from a pool, so
// requests run in parallel (SQLite in WAL mode: readers never wait; writers wait on
// one another for the length of one transaction). What must not interleave is kept
// apart by a lock class per method (registry.hpp: Concurrency): requests about one device
// are serialized with each other, changes of fleet-wide settings with each other, and
// reads take no lock at all; so one device's slow request never holds up another's.
#include <filesystem>
#include <array>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "libmirage/proto/frame.hpp"
#include "libmirage/server/housekeeping.hpp"
#include "libmirage/server/kinds.hpp"
#include "libmirage/server/limits.hpp"
#include "libmirage/server/metrics.hpp"
#include "libmirage/server/reach.hpp"
#include "libmirage/store/gc.hpp"
#include "libmirage/store/repository.hpp"

namespace mirage::server {

struct Method;
struct HttpRoute;

/// Who is calling: the local user over stdio, or the holder of a token over HTTP.
struct Caller {
  Role role = Role::admin;  ///< admin for stdio and admin tokens
  std::string name;         ///< token name (or device id), for the audit log
  /// The data directory's owner (stdio, run by the user who owns it, who could write the
  /// packs itself): its uploads are checked for framing, not decoded and re-hashed
  /// (store::UploadCheck).
  bool owner = false;
};

class Service {
 public:
  /// Opens the data directory; `create` makes a missing one (the embedded default).
  /// Requests are held to `limits`.
  Service(std::filesystem::path data, bool create, Limits limits = {});

  const Limits& limits() const { return m_limits; }
  /// True when this process's effective user owns the data directory (and so could
  /// write its packs directly): its stdio client is the store's owner (Caller::owner).
  bool data_owned_by_this_user() const;

  /// Runs one request; errors come back in the reply, never as exceptions.
  proto::Reply handle(proto::Request request, const Caller& caller);
  /// The caller a bearer token stands for, or nullopt when it is unknown, expired or
  /// revoked; the credential of a pending device throws Error(precondition), of a
  /// rejected one Error(permission).
  std::optional<Caller> authenticate(const std::string& token);

  /// The repository (catalog connection) of the request this thread is handling; a
  /// thread outside a request leases one for the call's duration via Lease.
  store::Repository& repo();
  /// The Prometheus exposition of this process (GET /metrics).
  std::string metrics_text();
  /// Counts a request the HTTP layer refused for the body budget (503).
  void note_body_budget_refusal() { m_metrics.busy(); }
  Metrics& metrics() { return m_metrics; }
  /// What each device may read (chunks.get, chunks.delta).
  DeviceReach& reach() { return m_reach; }
  /// One GC run (retention first) on its own connection; counted in the metrics.
  GcRan run_gc(const store::GcOptions& options);
  /// Adds a storage volume at `path` unless the catalog has it already.
  void ensure_volume(const std::string& path);

 private:
  /// A repository leased from the pool for one request (or one housekeeping call),
  /// returned when it goes out of scope; repo() on this thread answers with it.
  class Lease {
   public:
    explicit Lease(Service& service);
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

   private:
    Service& m_service;
    std::unique_ptr<store::Repository> m_repo;
    store::Repository* m_outer;  ///< the lease this one nests in (the same thread), if any
    uint64_t m_generation = 0;   ///< the service's generation when leased
  };
  /// The lock that keeps a request apart from those it must not interleave with.
  std::unique_lock<std::mutex> lock_for(const Method& method, const nlohmann::json& params, const Caller& caller);

  std::filesystem::path m_data;
  const Limits m_limits;
  std::mutex m_pool_mutex;
  std::vector<std::unique_ptr<store::Repository>> m_pool;  ///< idle connections
  uint64_t m_generation = 0;  ///< bumped after each GC: connections then drop their read descriptors
  std::mutex m_fleet_mutex;   ///< changes of fleet-wide state (tokens, policies, layers, orders…)
  std::array<std::mutex, 64> m_device_mutexes;  ///< striped by device id
  Metrics m_metrics;
  DeviceReach m_reach;
};

/// Creates a data directory with its admin token; returns the token (shown once).
/// Throws Error(precondition) when `data` is already initialized with a token.
std::string init_data_dir(const std::filesystem::path& data);

/// Answers every request read from `in` with `error` until end of stream (a server
/// that could not open its data directory tells the client why); returns 1.
int refuse_stdio(const Error& error, int in, int out);

/// Indexes the packs of a data directory, a new catalog if it lost its own (devices,
/// snapshots and tokens are not in packs: they are gone with it); makes an admin token
/// when the catalog has none. Returns the repair report, with "admin_token" if made.
nlohmann::json repair_data_dir(const std::filesystem::path& data);

/// Serves requests read from `in` until end of stream, writing replies to `out`.
/// Returns 0 at a clean end, 2 after a malformed frame (the stream cannot be resynced).
int serve_stdio(Service& service, int in, int out);

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;
  std::string tls_cert, tls_key;
  double gc_interval = 86400;  ///< seconds between automatic GC runs; 0: none
  size_t threads = 32;         ///< handler threads started up front (an idle connection holds none)
  size_t max_connections = 256;  ///< requests handled at once at most; further ones wait
  int read_timeout = 20;       ///< seconds a connection may send nothing before it is dropped
  uint64_t max_body_memory = 256u << 20;  ///< request bytes held in memory at once, all connections
  std::function<void(const std::string&)> on_listen;  ///< called with "host:port" once bound (port 0: the one picked)
  /// Called once bound with a function that makes serve_http return (it only closes the
  /// listening socket: cmd/ calls it from its SIGINT/SIGTERM handler), and with nullptr
  /// when serving ended. The library installs no signal handler.
  std::function<void(std::function<void()>)> on_stop;
};
/// Serves `routes` (routes.hpp: default_routes) over HTTP, with scheduled GC runs of
/// `service`, until the function given to options.on_stop is called; throws
/// Error(unavailable) when it cannot bind.
void serve_http(Service& service, const HttpOptions& options, std::vector<HttpRoute> routes);

/// Every limit with its effective value, default, unit, range, flag, what it bounds
/// and what a caller gets past it (limits.cpp): `mirage-serverd limits`.
nlohmann::json limits_report(const Limits& limits, const HttpOptions& http);

}  // namespace mirage::server

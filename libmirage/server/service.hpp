#pragma once
// The server's one table of request handlers, behind both transports (stdio and
// HTTP). Handlers run under one lock, except the verification of uploaded chunks
// (decompress + SHA-256), which is the expensive part and runs in parallel.
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "libmirage/proto/frame.hpp"
#include "libmirage/server/metrics.hpp"
#include "libmirage/store/gc.hpp"
#include "libmirage/store/repository.hpp"

namespace mirage::server {

/// Who is calling: the local user over stdio, or the holder of a token over HTTP.
struct Caller {
  std::string role = "admin";  ///< "admin" for stdio and admin tokens
  std::string name;            ///< token name, for the audit log
};

class Service {
 public:
  /// Opens the data directory; `create` makes a missing one (the embedded default).
  Service(std::filesystem::path data, bool create);

  /// Runs one request; errors come back in the reply, never as exceptions.
  proto::Reply handle(proto::Request request, const Caller& caller);
  /// The caller a bearer token stands for, or nullopt when it is unknown or revoked;
  /// throws Error(precondition) for the right credential of a device still pending.
  std::optional<Caller> authenticate(const std::string& token);

  store::Repository& repository() { return m_repo; }
  /// The Prometheus exposition of this process (GET /metrics).
  std::string metrics_text();
  /// One GC run (retention first) on its own connection; counted in the metrics.
  nlohmann::json run_gc(const store::GcOptions& options);
  /// Adds a storage volume at `path` unless the catalog has it already.
  void ensure_volume(const std::string& path);

 private:
  using Handler = std::function<void(proto::Request&, proto::Reply&, const Caller&)>;
  void register_handlers();
  void register_layer_handlers();  ///< layers.cpp: captures, layers, orders, status
  void register_fleet_handlers();  ///< fleet.cpp: policies, collections, tags, volumes, GC, snapshot requests
  /// The devices a request names: "device_ids" and the members of "collections",
  /// each once, in order; Error(usage) when there are none, Error(not_found) for an
  /// unknown collection.
  std::vector<std::string> target_devices(const nlohmann::json& params);
  catalog::Device accepted_device(const std::string& id);
  void verify_closure(const util::Digest& tree, const std::optional<util::Digest>& previous, const std::string& device);

  store::Repository m_repo;
  std::mutex m_mutex;
  struct Method {
    Handler fn;
    bool self_locking = false;  ///< takes m_mutex itself (for work that can run in parallel)
  };
  std::map<std::string, Method> m_handlers;
  Metrics m_metrics;
};

/// Creates a data directory with its admin token; returns the token (shown once).
/// Throws Error(precondition) when `data` is already initialized with a token.
std::string init_data_dir(const std::filesystem::path& data);

/// Serves requests read from `in` until end of stream, writing replies to `out`.
/// Returns 0 at a clean end, 2 after a malformed frame (the stream cannot be resynced).
int serve_stdio(Service& service, int in, int out);

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;
  std::string tls_cert, tls_key;
  double gc_interval = 86400;  ///< seconds between automatic GC runs; 0: none
  size_t threads = 32;         ///< connections served at once (a keep-alive connection holds one)
  std::function<void(const std::string&)> on_listen;  ///< called with "host:port" once bound
};
/// Serves HTTP until SIGINT/SIGTERM; throws Error(unavailable) when it cannot bind.
void serve_http(Service& service, const HttpOptions& options);

}  // namespace mirage::server

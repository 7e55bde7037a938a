#pragma once
// The HTTP/1.1 server (Boost.Beast on Asio, TLS through OpenSSL): event-driven, so a
// connection holds no thread while it is idle between requests or while its headers
// arrive; a request holds a handler thread only from its complete header to its reply.
// Routes are a table (method and path to a handler); the handler reads the body on
// demand, so a body can be refused (by size, by memory budget) before it is read.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mirage::server {

/// ASCII case-insensitive equality, as HTTP compares field names, schemes and tokens.
bool iequals(std::string_view a, std::string_view b);

/// A request as a handler sees it: its header, and a reader for its body.
struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string path;    ///< the target without its query
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<uint64_t> content_length;
  /// Feeds the body to `sink` in pieces until it ends or the sink returns false; false
  /// when the connection failed or timed out first. Reads nothing twice.
  std::function<bool(const std::function<bool(const char*, size_t)>&)> read_body;

  /// The value of header `name` (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  ///< close the connection after this reply
};

using HttpHandler = std::function<HttpResponse(HttpRequest&)>;

struct HttpRoute {
  std::string method;
  std::string path;
  HttpHandler handler;
};

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  ///< 0: any free port (see HttpServer::port)
  std::string tls_cert, tls_key;
  size_t threads = 32;           ///< handler threads started up front
  size_t max_handlers = 256;     ///< handler threads at most; further requests queue
  int read_timeout = 20;         ///< seconds a connection may send nothing before it is dropped
  uint32_t header_limit = 64 << 10;  ///< bytes of a request's header (request line and fields)
  uint64_t body_limit = 64 << 20;    ///< bytes of a refused body read and dropped before closing
};

/// Counts of the server itself (not of the methods), for /metrics.
struct HttpServerStats {
  uint64_t connections = 0;       ///< open now
  uint64_t connections_total = 0; ///< accepted since start
  uint64_t requests_total = 0;
  uint64_t header_refusals = 0;   ///< requests refused for an oversized or malformed header
  /// Seconds a request waited between its complete header and its handler, by bucket.
  std::vector<std::pair<double, uint64_t>> wait_buckets;  ///< (upper bound, count at or under it)
  double wait_sum = 0;
  uint64_t wait_count = 0;
};

class HttpServer {
 public:
  /// Binds (Error(unavailable) when the address is taken or cannot be had) and loads the
  /// TLS certificate and key when given (Error(usage) when they do not load).
  HttpServer(std::vector<HttpRoute> routes, const HttpServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// The port bound (the one chosen when the options said 0).
  int port() const;
  /// Serves until stop(); returns once every handler has finished.
  void run();
  /// Asks run() to return: safe from any thread and from a signal handler.
  void stop();
  HttpServerStats stats() const;
  /// The stats as Prometheus text (mirage_http_*).
  std::string metrics_text() const;

  struct Impl;  ///< http_server.cpp's

 private:
  std::unique_ptr<Impl> m_impl;
};

}  // namespace mirage::server

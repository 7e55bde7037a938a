#pragma once
// The HTTP server's route table: what serve_http answers, as (verb, path) → handler
// over plain request and response structs, so that the HTTP library underneath
// (cpp-httplib today) is one adapter in transports.cpp and a route (the portal's pages,
// later) is one more row. Chunk transfer rides the RPC route (chunks.put, chunks.get
// and chunks.delta frames carry their bytes as the frame's binary part).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mirage::server {

class Service;
struct HttpOptions;

enum class Verb { get, post };

struct HttpRequest {
  /// A header's value, "" when absent.
  std::function<std::string(const std::string& name)> header;
  /// Feeds the body to a sink in pieces (the sink returns false to stop reading).
  std::function<bool(const std::function<bool(const char*, size_t)>&)> read_body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Route {
  Verb verb;
  std::string path;
  std::function<void(const HttpRequest&, HttpResponse&)> handler;
};

/// The server's routes: POST /v1/rpc (every method, within the service's limits and a
/// body budget of `options.max_body_memory` shared by its connections), GET /healthz,
/// GET /metrics.
std::vector<Route> default_routes(Service& service, const HttpOptions& options);

}  // namespace mirage::server

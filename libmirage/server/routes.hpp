#pragma once
// The HTTP server's route table: what serve_http answers, as (method, path) → handler
// over the HTTP server's plain request and response (http_server.hpp), so a route (the
// portal's pages, later) is one more row. Chunk transfer rides the RPC route (chunks.put,
// chunks.get and chunks.delta frames carry their bytes as the frame's binary part).
#include <vector>

#include "libmirage/server/http_server.hpp"

namespace mirage::server {

class Service;
struct HttpOptions;

/// The server's routes: POST /v1/rpc (every method, within the service's limits and a
/// body budget of `options.max_body_memory` shared by its connections), GET /healthz,
/// GET /metrics (serve_http adds the HTTP server's own counts to it).
std::vector<HttpRoute> default_routes(Service& service, const HttpOptions& options);

}  // namespace mirage::server

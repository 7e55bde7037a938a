#include "libmirage/server/routes.hpp"

#include <cstdlib>

#include "libmirage/server/http_rpc.hpp"
#include "libmirage/server/service.hpp"

namespace mirage::server {

namespace {

void rpc(Service& service, BodyBudget& budget, const HttpRequest& req, HttpResponse& res) {
  HttpRpcRequest in;
  in.authorization = req.header("Authorization");
  in.method = req.header("X-Mirage-Method");
  if (std::string length = req.header("Content-Length"); !length.empty())
    in.content_length = std::strtoull(length.c_str(), nullptr, 10);
  in.read_body = req.read_body;
  auto out = serve_rpc(service, budget, in, std::chrono::seconds(service.limits().body_wait));
  // A body refused unread must not be taken for the next request on this connection.
  if (out.status == 413 || out.status == 401) res.headers.emplace_back("Connection", "close");
  if (out.retry_after) res.headers.emplace_back("Retry-After", std::to_string(out.retry_after));
  auto bytes = proto::encode_reply(out.reply);
  res.status = out.status;
  res.content_type = "application/x-mirage-frame";
  res.body.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

std::vector<Route> default_routes(Service& service, const HttpOptions& options) {
  auto budget = std::make_shared<BodyBudget>(options.max_body_memory);
  return {
      {Verb::post, "/v1/rpc", [&service, budget](const HttpRequest& req, HttpResponse& res) { rpc(service, *budget, req, res); }},
      {Verb::get, "/healthz", [](const HttpRequest&, HttpResponse& res) { res.body = "ok\n"; }},
      // Counts and timings only (no names, no secrets): open like /healthz, for Prometheus.
      {Verb::get, "/metrics",
       [&service](const HttpRequest&, HttpResponse& res) {
         res.body = service.metrics_text();
         res.content_type = "text/plain; version=0.0.4";
       }},
  };
}

}  // namespace mirage::server

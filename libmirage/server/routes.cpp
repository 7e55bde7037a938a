#include "libmirage/server/routes.hpp"


#include "libmirage/server/http_rpc.hpp"
#include "libmirage/server/service.hpp"

namespace mirage::server {

namespace {

HttpResponse rpc(Service& service, BodyBudget& budget, HttpRequest& req) {
  HttpRpcRequest in;
  in.authorization = req.header("Authorization");
  in.method = req.header("X-Mirage-Method");
  in.content_length = req.content_length;
  in.read_body = req.read_body;
  auto out = serve_rpc(service, budget, in, std::chrono::seconds(service.limits().body_wait));
  HttpResponse res;
  // A body refused unread must not be taken for the next request on this connection.
  res.close = out.status == 413 || out.status == 401;
  if (out.retry_after) res.headers.emplace_back("Retry-After", std::to_string(out.retry_after));
  auto bytes = proto::encode_reply(out.reply);
  res.status = out.status;
  res.content_type = "application/x-mirage-frame";
  res.body.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return res;
}

}  // namespace

std::vector<HttpRoute> default_routes(Service& service, const HttpOptions& options) {
  auto budget = std::make_shared<BodyBudget>(options.max_body_memory);
  return {
      {"POST", "/v1/rpc", [&service, budget](HttpRequest& req) { return rpc(service, *budget, req); }},
      {"GET", "/healthz", [](HttpRequest&) { return HttpResponse{200, "text/plain", "ok\n", {}, false}; }},
      // Counts and timings only (no names, no secrets): open like /healthz, for Prometheus.
      {"GET", "/metrics",
       [&service](HttpRequest&) { return HttpResponse{200, "text/plain; version=0.0.4", service.metrics_text(), {}, false}; }},
  };
}

}  // namespace mirage::server

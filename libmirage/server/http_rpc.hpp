#pragma once
// POST /v1/rpc as the HTTP server serves it, apart from the HTTP server so that it can be
// fuzzed and tested directly: the caller is authenticated from the headers, then the
// body is read only up to that caller's limit for the method, within a memory budget
// shared by all connections.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "libmirage/server/service.hpp"

namespace mirage::server {

/// Bytes of request bodies held in memory at once, across all connections: a request
/// waits (up to a limit) for its share, then gets 503 and retries later.
class BodyBudget {
 public:
  explicit BodyBudget(uint64_t total) : m_total(total), m_free(total) {}
  uint64_t total() const { return m_total; }
  /// Takes `n` bytes of the budget, waiting up to `wait`; false when it did not get them.
  bool acquire(uint64_t n, std::chrono::seconds wait);
  void release(uint64_t n);

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  const uint64_t m_total;
  uint64_t m_free;
};

/// One POST /v1/rpc: its headers, and a reader that feeds the body to a sink in
/// pieces (the sink returns false to stop reading).
struct HttpRpcRequest {
  std::string authorization;  ///< the Authorization header ("" when absent)
  std::string method;         ///< X-Mirage-Method ("" when absent)
  std::optional<uint64_t> content_length;
  std::function<bool(const std::function<bool(const char*, size_t)>&)> read_body;
};

struct HttpRpcResponse {
  int status = 200;
  proto::Reply reply;
  /// Seconds after which the same request may be sent again (a Retry-After header), 0
  /// for none: set only when the request was refused before it did anything.
  int retry_after = 0;
};

/// Serves one request under the service's limits (Service::limits()), waiting up to
/// `wait` for its share of `budget` (503 with Retry-After past it); never throws
/// (every error is a reply with its HTTP status).
HttpRpcResponse serve_rpc(Service& service, BodyBudget& budget, const HttpRpcRequest& request, std::chrono::seconds wait);

/// The HTTP status of a reply: 200, or by its error kind (400, 403, 404, 409, 422, 503, 500).
int http_status(const proto::Reply& reply);

/// The token of an "Authorization: Bearer T" header (the scheme is case-insensitive,
/// RFC 9110 §11.1); nullopt when there is none, an empty string when it is malformed.
std::optional<std::string> bearer_token(const std::string& header);

}  // namespace mirage::server

#include "libmirage/server/http_rpc.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "libmirage/server/http_server.hpp"
#include "libmirage/server/registry.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::server {

bool BodyBudget::acquire(uint64_t n, std::chrono::seconds wait) {
  std::unique_lock lock(m_mutex);
  if (!m_cv.wait_for(lock, wait, [&] { return m_free >= n; })) return false;
  m_free -= n;
  return true;
}

void BodyBudget::release(uint64_t n) {
  {
    std::lock_guard lock(m_mutex);
    m_free += n;
  }
  m_cv.notify_all();
}

int http_status(const proto::Reply& reply) {
  if (!reply.error) return 200;
  switch (reply.error->kind()) {
    case ErrorKind::usage: return 400;
    case ErrorKind::permission: return 403;
    case ErrorKind::not_found: return 404;
    case ErrorKind::precondition: return 409;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::integrity: return 422;
    default: return 500;
  }
}

std::optional<std::string> bearer_token(const std::string& header) {
  if (header.empty()) return std::nullopt;
  constexpr std::string_view scheme = "bearer ";
  if (header.size() <= scheme.size() || !iequals(std::string_view(header).substr(0, scheme.size()), scheme))
    return std::string();
  auto token = header.substr(scheme.size());
  token.erase(0, std::min(token.size(), token.find_first_not_of(' ')));
  return token;
}

namespace {

/// What the request log says of a request: the registry's name of its method (never
/// the text a client sent) and the caller's name (never a token).
struct Seen {
  std::string_view method = "-";
  Caller caller{Role::anonymous, ""};
};

HttpRpcResponse serve(Service& service, BodyBudget& budget, const HttpRpcRequest& in, std::chrono::seconds wait,
                      Seen& seen) {
  nlohmann::json id = nullptr;
  if (const Method* m = find_method(in.method)) seen.method = m->name;
  auto refuse = [&](Error e, int status = 0) {
    HttpRpcResponse out{0, proto::Reply{id, nlohmann::json::object(), std::move(e), {}}};
    out.status = status ? status : http_status(out.reply);
    return out;
  };
  Caller caller{Role::anonymous, ""};
  if (auto token = bearer_token(in.authorization)) {
    std::optional<Caller> who;
    try {
      if (!token->empty()) who = service.authenticate(*token);
    } catch (const Error& e) {
      return refuse(e);
    }
    if (!who) return refuse(Error(ErrorKind::permission, "unknown, expired or revoked token (or a device not accepted)"), 401);
    caller = *who;
  }
  seen.caller = caller;
  // The method rides in a header too, so its body limit is known before the body
  // (without it, the largest limit, checked again once the method is known).
  const Limits& limits = service.limits();
  const bool anonymous = caller.role == Role::anonymous;
  uint64_t declared = in.content_length.value_or(limits.body_limit(in.method, anonymous));
  if (auto refusal = limits.body_refusal(declared, in.method, anonymous)) return refuse(*refusal, 413);
  // An upload is held twice while it is verified (the body, then its records), so it
  // is charged twice; a single request never needs more than the whole budget.
  const Method* method = find_method(in.method);
  bool upload = in.method.empty() || (method && method->body == &Limits::upload_body);
  uint64_t charge = std::min(budget.total(), upload ? 2 * declared : declared);
  if (!budget.acquire(charge, wait)) {
    // The body is read and dropped (no memory held) so that the reply reaches a client
    // still sending it: a connection closed on unread bytes is reset, reply and all.
    if (in.read_body) {
      uint64_t dropped = 0;
      in.read_body([&](const char*, size_t n) { return (dropped += n) <= declared; });
    }
    service.note_body_budget_refusal();
    auto out = refuse(Error(ErrorKind::unavailable, "server busy: too many request bodies in memory; retry later"));
    out.retry_after = 1;
    return out;
  }
  struct Release {
    BodyBudget& budget;
    uint64_t n;
    ~Release() { budget.release(n); }
  } release{budget, charge};
  std::vector<uint8_t> body;
  body.reserve(static_cast<size_t>(declared));
  bool over = false;
  if (in.read_body)
    in.read_body([&](const char* data, size_t n) {
      if (body.size() + n > declared) {
        over = true;
        return false;
      }
      body.insert(body.end(), reinterpret_cast<const uint8_t*>(data), reinterpret_cast<const uint8_t*>(data) + n);
      return true;
    });
  HttpRpcResponse out;
  try {
    if (over) throw Error(ErrorKind::usage, "request body is longer than its Content-Length or the limit");
    size_t length = body.size();
    auto request = proto::parse_request(proto::decode_frame(std::move(body), limits.frame()), &id);
    if (!in.method.empty() && request.method != in.method)
      throw Error(ErrorKind::usage, "X-Mirage-Method does not name the request's method");
    if (const Method* m = find_method(request.method)) seen.method = m->name;
    if (in.method.empty() && length > limits.body_limit(request.method))
      throw Error(ErrorKind::usage, "request body is over the limit for " + request.method);
    out.reply = service.handle(std::move(request), caller);
  } catch (const Error& e) {
    out.reply = proto::Reply{id, nlohmann::json::object(), e, {}};
  }
  out.status = http_status(out.reply);
  return out;
}

}  // namespace

HttpRpcResponse serve_rpc(Service& service, BodyBudget& budget, const HttpRpcRequest& in, std::chrono::seconds wait) {
  if (!util::log_enabled(util::LogLevel::info)) {
    Seen ignored;
    return serve(service, budget, in, wait, ignored);
  }
  auto started = std::chrono::steady_clock::now();
  Seen seen;
  HttpRpcResponse out = serve(service, budget, in, wait, seen);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
  char ms[32];
  std::snprintf(ms, sizeof ms, "%lld.%03lld", static_cast<long long>(us / 1000), static_cast<long long>(us % 1000));
  std::string line = "request method=";
  line.append(seen.method).append(" caller=").append(seen.caller.name.empty() ? "-" : seen.caller.name);
  line.append(" role=").append(name(seen.caller.role)).append(" status=").append(std::to_string(out.status));
  line.append(" ms=").append(ms);
  if (out.reply.error) line.append(" error=").append(kind_name(out.reply.error->kind()));
  util::log(util::LogLevel::info, line);
  return out;
}

}  // namespace mirage::server

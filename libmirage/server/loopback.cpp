#include "libmirage/server/loopback.hpp"

#include <algorithm>

#include "libmirage/util/error.hpp"

namespace mirage::server {

proto::Reply LoopbackTransport::call(const proto::Request& request) {
  proto::Reply reply;
  nlohmann::json id = nullptr;
  try {
    auto frame = proto::decode_frame(proto::encode_request(request), m_service.limits().frame());
    size_t length = frame.header.dump().size() + 1 + frame.binary.size();
    auto sent = proto::parse_request(std::move(frame), &id);
    Caller caller{Role::anonymous, ""};
    if (!m_token.empty()) {
      auto who = m_service.authenticate(m_token);
      if (!who) throw Error(ErrorKind::permission, "unknown, expired or revoked token (or a device not accepted)");
      caller = *who;
    }
    // The body limits hold here as over HTTP (after authentication, lower without a token).
    const Limits& limits = m_service.limits();
    uint64_t limit = limits.body_limit(sent.method);
    if (caller.role == Role::anonymous) limit = std::min(limit, limits.anonymous_body);
    if (length > limit)
      throw Error(ErrorKind::usage, "request body of " + std::to_string(length) + " bytes is over the limit of " +
                                        std::to_string(limit) + " for " + sent.method +
                                        (caller.role == Role::anonymous ? " without a token" : ""));
    reply = m_service.handle(std::move(sent), caller);
  } catch (const Error& e) {
    reply = proto::Reply{id, nlohmann::json::object(), e, {}};
  }
  return proto::parse_reply(proto::decode_frame(proto::encode_reply(reply)));
}

}  // namespace mirage::server

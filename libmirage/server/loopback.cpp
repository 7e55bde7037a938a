#include "libmirage/server/loopback.hpp"

#include "libmirage/util/error.hpp"

namespace mirage::server {

proto::Reply LoopbackTransport::call(const proto::Request& request) {
  proto::Reply reply;
  nlohmann::json id = nullptr;
  try {
    auto sent = proto::parse_request(proto::decode_frame(proto::encode_request(request), m_service.limits().frame()), &id);
    Caller caller{Role::anonymous, ""};
    if (!m_token.empty()) {
      auto who = m_service.authenticate(m_token);
      if (!who) throw Error(ErrorKind::permission, "unknown, expired or revoked token (or a device not accepted)");
      caller = *who;
    }
    reply = m_service.handle(std::move(sent), caller);
  } catch (const Error& e) {
    reply = proto::Reply{id, nlohmann::json::object(), e, {}};
  }
  return proto::parse_reply(proto::decode_frame(proto::encode_reply(reply)));
}

}  // namespace mirage::server

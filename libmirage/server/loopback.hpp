#pragma once
// An in-process transport that calls a Service directly, for tests of the client and the
// endpoint agent without a server process. Every call goes through the wire format both
// ways (encoded, decoded with the service's frame limits) and is authenticated from its
// token as an HTTP request is, so what passes here passes over the wire.
#include <string>

#include "libmirage/proto/transport.hpp"
#include "libmirage/server/service.hpp"

namespace mirage::server {

class LoopbackTransport : public proto::Transport {
 public:
  /// `token` empty: an anonymous caller (as an HTTP request without Authorization).
  LoopbackTransport(Service& service, std::string token) : m_service(service), m_token(std::move(token)) {}
  proto::Reply call(const proto::Request& request) override;
  std::string describe() const override { return "loopback"; }

 private:
  Service& m_service;
  std::string m_token;
};

}  // namespace mirage::server

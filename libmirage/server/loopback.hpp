#pragma once
// Transports that call a Service in this process.
//  - LoopbackTransport, for tests of the client and the endpoint agent without a server
//    process: every call goes through the wire format both ways (encoded, decoded with
//    the service's frame limits) and is authenticated from its token as an HTTP request
//    is, so what passes here passes over the wire.
//  - open_in_process, the embedded default (local:DIR): the data directory's own service,
//    called without a wire by its local user, as `mirage-serverd --stdio` serves it.
#include <filesystem>
#include <memory>
#include <string>

#include "libmirage/proto/transport.hpp"
#include "libmirage/server/service.hpp"

namespace mirage::server {

class LoopbackTransport : public proto::Transport {
 public:
  /// `token` empty: an anonymous caller (as an HTTP request without Authorization).
  LoopbackTransport(Service& service, std::string token) : m_service(service), m_token(std::move(token)) {}
  proto::Reply call(proto::Request request) override;
  std::string describe() const override { return "loopback"; }

 private:
  Service& m_service;
  std::string m_token;
};

/// A transport to the service of data directory `data` in this process: one service a
/// directory, shared by the transports open on it (the connections of one command), made
/// (and the directory with it, when missing) by the first and closed with the last. Its
/// caller is the local admin, and the store's owner when this process's user owns the
/// directory (Caller::owner), as the stdio server's; requests are held to `limits` (those
/// of the first transport on the directory). Throws what opening the directory throws
/// (a damaged store: Error(integrity)).
/// With `create` false a missing data directory is Error(not_found) naming it, and
/// nothing is made.
std::unique_ptr<proto::Transport> open_in_process(const std::filesystem::path& data, const Limits& limits = {},
                                                  bool create = true);

}  // namespace mirage::server

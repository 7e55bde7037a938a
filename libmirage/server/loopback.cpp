#include "libmirage/server/loopback.hpp"

#include <algorithm>
#include <map>
#include <mutex>

#include "libmirage/util/error.hpp"

namespace mirage::server {

proto::Reply LoopbackTransport::call(proto::Request request) {
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
    if (auto refusal = m_service.limits().body_refusal(length, sent.method, caller.role == Role::anonymous)) throw *refusal;
    reply = m_service.handle(std::move(sent), caller);
  } catch (const Error& e) {
    reply = proto::Reply{id, nlohmann::json::object(), e, {}};
  }
  return proto::parse_reply(proto::decode_frame(proto::encode_reply(reply)));
}

namespace {

class InProcessTransport : public proto::Transport {
 public:
  InProcessTransport(std::shared_ptr<Service> service, std::string data)
      : m_service(std::move(service)),
        m_data(std::move(data)),
        m_caller{Role::admin, "local", m_service->data_owned_by_this_user()} {}

  proto::Reply call(proto::Request request) override {
    // The server gets what it would read over stdio: the header as the wire carries it
    // (text valid UTF-8: a file name in Latin-1 among a commit's unreadable entries must
    // not stop the commit; the frame limits held), and the body limits hold as there.
    nlohmann::json id = request.id;
    try {
      size_t length = 0;
      auto sent = proto::rewire_request(std::move(request), m_service->limits().frame(), &length, &id);
      if (auto refusal = m_service->limits().body_refusal(length, sent.method, false)) throw *refusal;
      return m_service->handle(std::move(sent), m_caller);
    } catch (const Error& e) {
      return proto::Reply{id, nlohmann::json::object(), e, {}};
    }
  }
  std::string describe() const override { return "local:" + m_data; }

 private:
  std::shared_ptr<Service> m_service;
  std::string m_data;
  Caller m_caller;
};

}  // namespace

std::unique_ptr<proto::Transport> open_in_process(const std::filesystem::path& data, const Limits& limits, bool create) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<Service>> services;
  std::string key = std::filesystem::absolute(data).lexically_normal().string();
  std::lock_guard lock(mutex);
  std::erase_if(services, [](const auto& s) { return s.second.expired(); });
  std::shared_ptr<Service> service = services[key].lock();
  if (!service) {
    std::error_code ec;
    if (!create && !std::filesystem::exists(key, ec))
      throw Error(ErrorKind::not_found, "no store at " + key +
                                            " (nothing was centralized there; is MIRAGE_HOME or --server right?)");
    service = std::make_shared<Service>(key, create, limits);
    services[key] = service;
  }
  return std::make_unique<InProcessTransport>(std::move(service), key);
}

}  // namespace mirage::server

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "libmirage/server/service.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::server {

int serve_stdio(Service& service, int in, int out) {
  proto::FrameReader reader(in);
  Caller local{"admin", "local"};
  for (;;) {
    std::optional<proto::Frame> frame;
    try {
      frame = reader.next();
    } catch (const Error& e) {
      proto::Reply reply{nullptr, nlohmann::json::object(), e, {}};
      auto bytes = proto::encode_reply(reply);
      try {
        util::write_all(out, bytes, "stdout");
      } catch (...) {
      }
      return e.kind() == ErrorKind::unavailable ? 1 : 2;
    }
    if (!frame) return 0;
    nlohmann::json id = nullptr;
    proto::Reply reply;
    try {
      reply = service.handle(proto::parse_request(std::move(*frame), &id), local);
    } catch (const Error& e) {
      reply = proto::Reply{id, nlohmann::json::object(), e, {}};
    }
    util::write_all(out, proto::encode_reply(reply), "stdout");
  }
}

namespace {
std::atomic<httplib::Server*> g_server{nullptr};
void stop_server(int) {
  if (auto* s = g_server.load()) s->stop();
}

void send_reply(httplib::Response& res, const proto::Reply& reply, int status) {
  auto bytes = proto::encode_reply(reply);
  res.status = status;
  res.set_content(reinterpret_cast<const char*>(bytes.data()), bytes.size(), "application/x-mirage-frame");
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
}  // namespace

void serve_http(Service& service, const HttpOptions& options) {
  std::unique_ptr<httplib::Server> server;
  if (!options.tls_cert.empty())
    server = std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
  else
    server = std::make_unique<httplib::Server>();
  if (!server->is_valid()) throw Error(ErrorKind::usage, "TLS certificate or key could not be loaded");
  server->set_payload_max_length(proto::k_max_binary + proto::k_max_header);
  server->new_task_queue = [n = options.threads] { return new httplib::ThreadPool(n); };
  server->set_read_timeout(300, 0);
  server->set_write_timeout(300, 0);
  server->Post("/v1/rpc", [&service](const httplib::Request& req, httplib::Response& res) {
    nlohmann::json id = nullptr;
    std::string auth = req.get_header_value("Authorization");
    Caller caller;
    if (auth.rfind("Bearer ", 0) != 0) {
      caller = Caller{"anonymous", ""};  // may only register (roles.cpp)
    } else {
      std::optional<Caller> who;
      try {
        who = service.authenticate(auth.substr(7));
      } catch (const Error& e) {  // a pending device's credential
        proto::Reply refused{id, nlohmann::json::object(), e, {}};
        send_reply(res, refused, http_status(refused));
        return;
      }
      if (!who) {
        send_reply(res, {id, {}, Error(ErrorKind::permission, "unknown or revoked token (or a device not accepted)"), {}}, 401);
        return;
      }
      caller = *who;
    }
    proto::Reply reply;
    try {
      auto body = std::span(reinterpret_cast<const uint8_t*>(req.body.data()), req.body.size());
      reply = service.handle(proto::parse_request(proto::decode_frame(body), &id), caller);
    } catch (const Error& e) {
      reply = proto::Reply{id, nlohmann::json::object(), e, {}};
    }
    send_reply(res, reply, http_status(reply));
  });
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  // Counts and timings only (no names, no secrets): open like /healthz, for Prometheus.
  server->Get("/metrics", [&service](const httplib::Request&, httplib::Response& res) {
    res.set_content(service.metrics_text(), "text/plain; version=0.0.4");
  });
  if (!server->bind_to_port(options.host.c_str(), options.port))
    throw Error(ErrorKind::unavailable, "listen on " + options.host + ":" + std::to_string(options.port) + ": cannot bind");
  g_server = server.get();
  struct sigaction sa {};
  sa.sa_handler = stop_server;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (options.on_listen) options.on_listen(options.host + ":" + std::to_string(options.port));
  // GC on a schedule, in its own thread and connection: requests go on meanwhile.
  std::mutex gc_mutex;
  std::condition_variable gc_wake;
  bool stopping = false;
  std::thread gc_thread;
  if (options.gc_interval > 0) {
    gc_thread = std::thread([&] {
      std::unique_lock lock(gc_mutex);
      auto interval = std::chrono::duration<double>(options.gc_interval);
      while (!gc_wake.wait_for(lock, interval, [&] { return stopping; })) {
        lock.unlock();
        try {
          auto r = service.run_gc(store::GcOptions{});
          util::log(util::LogLevel::info, "scheduled gc: deleted " + std::to_string(r.value("deleted", 0)) + " chunks, freed " +
                                              std::to_string(r.value("freed_bytes", uint64_t(0))) + " bytes");
        } catch (const std::exception& e) {
          util::warn(std::string("scheduled gc failed: ") + e.what());
        }
        lock.lock();
      }
    });
  }
  server->listen_after_bind();
  g_server = nullptr;
  if (gc_thread.joinable()) {
    {
      std::lock_guard lock(gc_mutex);
      stopping = true;
    }
    gc_wake.notify_all();
    gc_thread.join();
  }
}

}  // namespace mirage::server

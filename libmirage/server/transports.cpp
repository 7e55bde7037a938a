#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "libmirage/server/http_rpc.hpp"
#include "libmirage/server/http_server.hpp"
#include "libmirage/server/routes.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::server {

int serve_stdio(Service& service, int in, int out) {
  proto::FrameReader reader(in, service.limits().frame());
  // The stdio client is the store's owner when this user owns the data directory (it
  // could write the packs itself): its uploads are checked for framing only.
  Caller local{Role::admin, "local", service.data_owned_by_this_user()};
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
      // The body limits hold here too (as over HTTP, header line and binary part): a
      // lowered --limit upload-body is not only for HTTP clients.
      size_t length = frame->header.dump().size() + 1 + frame->binary.size();
      auto request = proto::parse_request(std::move(*frame), &id);
      if (auto refusal = service.limits().body_refusal(length, request.method, false)) throw *refusal;
      reply = service.handle(std::move(request), local);
    } catch (const Error& e) {
      reply = proto::Reply{id, nlohmann::json::object(), e, {}};
    }
    // The header, then the binary part where it is (a 32 MiB chunks.get reply is not
    // copied behind its header).
    util::write_all(out, proto::encode_reply_header(reply), "stdout");
    util::write_all(out, reply.binary, "stdout");
  }
}

int refuse_stdio(const Error& error, int in, int out) {
  proto::FrameReader reader(in);
  try {
    while (auto frame = reader.next()) {
      nlohmann::json id = frame->header.is_object() ? frame->header.value("id", nlohmann::json(nullptr)) : nullptr;
      util::write_all(out, proto::encode_reply({id, nlohmann::json::object(), error, {}}), "stdout");
    }
  } catch (const Error&) {  // a malformed frame or a closed pipe: nothing more to answer
  }
  return 1;
}

void serve_http(Service& service, const HttpOptions& options, std::vector<HttpRoute> routes) {
  HttpServer* self = nullptr;  // set once made: /metrics adds the server's own counts
  for (auto& route : routes)
    if (route.path == "/metrics")
      route.handler = [inner = std::move(route.handler), &self](HttpRequest& req) {
        auto res = inner(req);
        if (self) res.body += self->metrics_text();
        return res;
      };
  HttpServerOptions http;
  http.host = options.host;
  http.port = options.port;
  http.tls_cert = options.tls_cert;
  http.tls_key = options.tls_key;
  http.threads = options.threads;
  http.max_handlers = options.max_connections;
  http.read_timeout = options.read_timeout;
  http.body_limit = service.limits().max_body();
  HttpServer server(std::move(routes), http);
  self = &server;
  // stop() only sets a flag: cmd/ may call it from a signal handler.
  if (options.on_stop) options.on_stop([&server] { server.stop(); });
  if (options.on_listen) options.on_listen(options.host + ":" + std::to_string(server.port()));
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
          util::log(util::LogLevel::info, "scheduled gc: deleted " + std::to_string(r.gc.deleted) + " chunks, freed " +
                                              std::to_string(r.gc.freed_bytes) + " bytes");
        } catch (const std::exception& e) {
          util::warn(std::string("scheduled gc failed: ") + e.what());
        }
        lock.lock();
      }
    });
  }
  server.run();
  if (options.on_stop) options.on_stop(nullptr);
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

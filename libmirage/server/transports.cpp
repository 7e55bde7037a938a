#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "libmirage/server/http_rpc.hpp"
#include "libmirage/server/roles.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::server {

int serve_stdio(Service& service, int in, int out) {
  proto::FrameReader reader(in, service.limits().frame());
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
      // The body limits hold here too (as over HTTP, header line and binary part): a
      // lowered --limit upload-body is not only for HTTP clients.
      size_t length = frame->header.dump().size() + 1 + frame->binary.size();
      auto request = proto::parse_request(std::move(*frame), &id);
      if (length > service.limits().body_limit(request.method))
        throw Error(ErrorKind::usage, "request body of " + std::to_string(length) + " bytes is over the limit of " +
                                          std::to_string(service.limits().body_limit(request.method)) + " for " +
                                          request.method);
      reply = service.handle(std::move(request), local);
    } catch (const Error& e) {
      reply = proto::Reply{id, nlohmann::json::object(), e, {}};
    }
    util::write_all(out, proto::encode_reply(reply), "stdout");
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

namespace {
void send_reply(httplib::Response& res, const proto::Reply& reply, int status) {
  auto bytes = proto::encode_reply(reply);
  res.status = status;
  res.set_content(reinterpret_cast<const char*>(bytes.data()), bytes.size(), "application/x-mirage-frame");
}

}  // namespace

namespace {

/// cpp-httplib serves each connection on a thread from start to end, headers included,
/// so a fixed pool is held by as many clients that never finish their headers. This
/// pool starts `base` threads and adds one whenever a connection would wait, up to
/// `max`: slow clients then cost a sleeping thread each (for the read timeout), not
/// everyone's service. Threads are kept once made; past `max` connections queue.
class ElasticPool final : public httplib::TaskQueue {
 public:
  ElasticPool(size_t base, size_t max) : m_max(std::max(base, max)) {
    std::lock_guard lock(m_mutex);
    for (size_t i = 0; i < base; ++i) spawn();
  }
  ~ElasticPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard lock(m_mutex);
      m_jobs.push_back(std::move(fn));
      if (m_idle < m_jobs.size() && m_threads.size() < m_max) spawn();
    }
    m_cv.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      m_stopping = true;
    }
    m_cv.notify_all();
    for (auto& t : m_threads) t.join();
  }

 private:
  void spawn() {  // under m_mutex
    m_threads.emplace_back([this] {
      std::unique_lock lock(m_mutex);
      for (;;) {
        m_idle++;
        m_cv.wait(lock, [&] { return m_stopping || !m_jobs.empty(); });
        m_idle--;
        if (m_jobs.empty()) return;  // stopping, nothing left
        auto fn = std::move(m_jobs.front());
        m_jobs.pop_front();
        lock.unlock();
        fn();
        lock.lock();
      }
    });
  }

  const size_t m_max;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::function<void()>> m_jobs;
  std::vector<std::thread> m_threads;
  size_t m_idle = 0;
  bool m_stopping = false;
};

}  // namespace

void serve_http(Service& service, const HttpOptions& options) {
  std::unique_ptr<httplib::Server> server;
  if (!options.tls_cert.empty())
    server = std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
  else
    server = std::make_unique<httplib::Server>();
  if (!server->is_valid()) throw Error(ErrorKind::usage, "TLS certificate or key could not be loaded");
  // No SO_REUSEPORT (cpp-httplib's default): a second server on the same address and
  // port must fail to bind rather than share the connections between two stores.
  server->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server->set_payload_max_length(service.limits().max_body());
  // Replies go out as two writes (headers, body): without TCP_NODELAY the second waits
  // for the client's delayed ACK (~40 ms), once per request.
  server->set_tcp_nodelay(true);
  server->new_task_queue = [&options] { return new ElasticPool(options.threads, options.max_connections); };
  // A connection that sends nothing for this long is dropped (a slow client that
  // never finishes its headers holds a thread only this long).
  server->set_read_timeout(options.read_timeout, 0);
  server->set_write_timeout(options.read_timeout, 0);
  auto budget = std::make_shared<BodyBudget>(options.max_body_memory);
  server->Post("/v1/rpc", [&service, budget, &options](const httplib::Request& req, httplib::Response& res,
                                                     const httplib::ContentReader& read_body) {
    HttpRpcRequest in;
    in.authorization = req.get_header_value("Authorization");
    in.method = req.get_header_value("X-Mirage-Method");
    if (req.has_header("Content-Length"))
      in.content_length = std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10);
    in.read_body = [&](const std::function<bool(const char*, size_t)>& sink) {
      return read_body([&](const char* data, size_t n) { return sink(data, n); });
    };
    auto out = serve_rpc(service, *budget, in, std::chrono::seconds(service.limits().body_wait));
    // A body refused unread must not be taken for the next request on this connection.
    if (out.status == 413 || out.status == 401) res.set_header("Connection", "close");
    if (out.retry_after) res.set_header("Retry-After", std::to_string(out.retry_after));
    send_reply(res, out.reply, out.status);
  });
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  // Counts and timings only (no names, no secrets): open like /healthz, for Prometheus.
  server->Get("/metrics", [&service](const httplib::Request&, httplib::Response& res) {
    res.set_content(service.metrics_text(), "text/plain; version=0.0.4");
  });
  // Port 0: one the kernel picks (tests), reported through on_listen.
  int port = options.port;
  if (port == 0)
    port = server->bind_to_any_port(options.host.c_str());
  else if (!server->bind_to_port(options.host.c_str(), port))
    port = -1;
  if (port <= 0)
    throw Error(ErrorKind::unavailable, "listen on " + options.host + ":" + std::to_string(options.port) +
                                            ": cannot bind (is another server listening there?)");
  if (options.on_stop) options.on_stop([s = server.get()] { s->stop(); });
  if (options.on_listen) options.on_listen(options.host + ":" + std::to_string(port));
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

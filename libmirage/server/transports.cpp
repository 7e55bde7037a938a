#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "libmirage/server/http_rpc.hpp"
#include "libmirage/server/routes.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::server {

int serve_stdio(Service& service, int in, int out) {
  proto::FrameReader reader(in, service.limits().frame());
  Caller local{Role::admin, "local"};
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
std::atomic<httplib::Server*> g_server{nullptr};
void stop_server(int) {
  if (auto* s = g_server.load()) s->stop();
}

/// Runs a route over cpp-httplib's request and response.
void answer(const Route& route, const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* reader) {
  HttpRequest in;
  in.header = [&req](const std::string& name) { return req.get_header_value(name.c_str()); };
  if (reader)
    in.read_body = [reader](const std::function<bool(const char*, size_t)>& sink) {
      return (*reader)([&](const char* data, size_t n) { return sink(data, n); });
    };
  HttpResponse out;
  route.handler(in, out);
  for (const auto& [name, value] : out.headers) res.set_header(name.c_str(), value);
  res.status = out.status;
  res.body = std::move(out.body);
  res.set_header("Content-Type", out.content_type);
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

void serve_http(Service& service, const HttpOptions& options, std::span<const Route> routes) {
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
  for (const auto& route : routes) {
    if (route.verb == Verb::post)
      server->Post(route.path, [&route](const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& reader) { answer(route, req, res, &reader); });
    else
      server->Get(route.path, [&route](const httplib::Request& req, httplib::Response& res) { answer(route, req, res, nullptr); });
  }
  if (!server->bind_to_port(options.host.c_str(), options.port))
    throw Error(ErrorKind::unavailable, "listen on " + options.host + ":" + std::to_string(options.port) +
                                            ": cannot bind (is another server listening there?)");
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

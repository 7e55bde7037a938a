#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "libmirage/server/roles.hpp"
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

namespace {

/// Bytes of request bodies held in memory at once, across all connections: a request
/// waits (up to the read timeout) for its share, then gets 503 and retries later.
class BodyBudget {
 public:
  explicit BodyBudget(uint64_t total) : m_free(total) {}
  bool acquire(uint64_t n, std::chrono::seconds wait) {
    std::unique_lock lock(m_mutex);
    return m_cv.wait_for(lock, wait, [&] { return m_free >= n; }) && (m_free -= n, true);
  }
  void release(uint64_t n) {
    {
      std::lock_guard lock(m_mutex);
      m_free += n;
    }
    m_cv.notify_all();
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  uint64_t m_free;
};

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

/// The token of an "Authorization: Bearer T" header (the scheme is case-insensitive,
/// RFC 9110 §11.1); nullopt when there is none, an empty string when it is malformed.
std::optional<std::string> bearer_token(const std::string& header) {
  if (header.empty()) return std::nullopt;
  constexpr std::string_view scheme = "bearer ";
  if (header.size() <= scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), header.begin(), [](char a, char b) { return a == std::tolower(b); }))
    return std::string();
  auto token = header.substr(scheme.size());
  token.erase(0, token.find_first_not_of(' '));
  return token;
}

/// Serves one POST /v1/rpc: the caller is known from the headers before any of the
/// body is read, and the body is read only up to what that caller may send.
void serve_rpc(Service& service, BodyBudget& budget, const HttpOptions& options, const httplib::Request& req,
               httplib::Response& res, const httplib::ContentReader& read_body) {
  nlohmann::json id = nullptr;
  Caller caller{"anonymous", ""};
  if (auto token = bearer_token(req.get_header_value("Authorization"))) {
    std::optional<Caller> who;
    try {
      if (!token->empty()) who = service.authenticate(*token);
    } catch (const Error& e) {
      proto::Reply refused{id, {}, e, {}};
      send_reply(res, refused, http_status(refused));
      return;
    }
    if (!who) {
      send_reply(res, {id, {}, Error(ErrorKind::permission, "unknown, expired or revoked token (or a device not accepted)"), {}},
                 401);
      return;
    }
    caller = *who;
  }
  // The method rides in a header too, so its body limit is known before the body
  // (without it, the largest limit, checked again once the method is known).
  std::string method = req.get_header_value("X-Mirage-Method");
  uint64_t limit = method.empty() ? body_limit("chunks.put") : body_limit(method);
  if (caller.role == "anonymous") limit = std::min(limit, k_anonymous_body);
  uint64_t declared = req.has_header("Content-Length") ? std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) : limit;
  if (declared > limit) {
    send_reply(res, {id, {}, Error(ErrorKind::usage, "request body of " + std::to_string(declared) + " bytes is over the limit of " +
                                                      std::to_string(limit) + " for " + (method.empty() ? "this request" : method) +
                                                      (caller.role == "anonymous" ? " without a token" : "")), {}},
               413);
    return;
  }
  if (!budget.acquire(declared, std::chrono::seconds(options.read_timeout))) {
    send_reply(res, {id, {}, Error(ErrorKind::unavailable, "server busy: too many request bodies in memory; retry later"), {}}, 503);
    return;
  }
  struct Release {
    BodyBudget& budget;
    uint64_t n;
    ~Release() { budget.release(n); }
  } release{budget, declared};
  std::string body;
  body.reserve(static_cast<size_t>(declared));
  bool over = false;
  read_body([&](const char* data, size_t n) {
    if (body.size() + n > declared) {
      over = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  proto::Reply reply;
  try {
    if (over) throw Error(ErrorKind::usage, "request body is longer than its Content-Length or the limit");
    auto frame = proto::decode_frame(std::span(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
    auto request = proto::parse_request(std::move(frame), &id);
    if (!method.empty() && request.method != method)
      throw Error(ErrorKind::usage, "X-Mirage-Method does not name the request's method");
    if (method.empty() && body.size() > body_limit(request.method))
      throw Error(ErrorKind::usage, "request body is over the limit for " + request.method);
    reply = service.handle(std::move(request), caller);
  } catch (const Error& e) {
    reply = proto::Reply{id, nlohmann::json::object(), e, {}};
  }
  send_reply(res, reply, http_status(reply));
}

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
  server->set_payload_max_length(body_limit("chunks.put"));
  server->new_task_queue = [&options] { return new ElasticPool(options.threads, options.max_connections); };
  // A connection that sends nothing for this long is dropped (a slow client that
  // never finishes its headers holds a thread only this long).
  server->set_read_timeout(options.read_timeout, 0);
  server->set_write_timeout(options.read_timeout, 0);
  auto budget = std::make_shared<BodyBudget>(options.max_body_memory);
  server->Post("/v1/rpc", [&service, budget, &options](const httplib::Request& req, httplib::Response& res,
                                                     const httplib::ContentReader& read_body) {
    serve_rpc(service, *budget, options, req, res, read_body);
  });
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  // Counts and timings only (no names, no secrets): open like /healthz, for Prometheus.
  server->Get("/metrics", [&service](const httplib::Request&, httplib::Response& res) {
    res.set_content(service.metrics_text(), "text/plain; version=0.0.4");
  });
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

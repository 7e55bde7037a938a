#include "libmirage/server/http_server.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "libmirage/util/error.hpp"

namespace mirage::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string_view sv(beast::string_view v) { return {v.data(), v.size()}; }

constexpr std::array<double, 10> k_wait_buckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

/// Handler threads: `base` started up front, one more whenever a request would wait
/// (up to `max`); a blocked handler (an fsync, a body arriving slowly) then costs a
/// thread, not everyone's service. Threads are kept once made; past `max` requests queue.
class HandlerPool {
 public:
  HandlerPool(size_t base, size_t max) : m_max(std::max<size_t>({base, max, 1})) {
    std::lock_guard lock(m_mutex);
    for (size_t i = 0; i < std::max<size_t>(base, 1); ++i) spawn();
  }
  ~HandlerPool() { shutdown(); }

  void enqueue(std::function<void()> fn) {
    {
      std::lock_guard lock(m_mutex);
      if (m_stopping) return;
      m_jobs.push_back(std::move(fn));
      if (m_idle < m_jobs.size() && m_threads.size() < m_max) spawn();
    }
    m_cv.notify_one();
  }

  /// Runs what is queued, then joins every thread.
  void shutdown() {
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

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

bool HttpRequest::has_header(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
}

struct HttpServer::Impl {
  Impl(std::vector<HttpRoute> r, const HttpServerOptions& o)
      : routes(std::move(r)), opt(o), acceptor(asio::make_strand(io)), pool(o.threads, o.max_handlers) {}

  // In this order: the io_context goes before what its pending sessions use as they end.
  std::vector<HttpRoute> routes;
  HttpServerOptions opt;
  std::optional<asio::ssl::context> tls;
  std::atomic<bool> stop_requested{false};
  int port = 0;  ///< bound, read once: the acceptor is its strand's

  std::mutex live_mutex;
  uint64_t next_session = 0;
  std::unordered_map<uint64_t, std::function<void()>> live;  ///< closers of open sessions

  mutable std::mutex stats_mutex;
  HttpServerStats stats;

  asio::io_context io;
  tcp::acceptor acceptor;
  HandlerPool pool;

  void accept();
  template <class Stream>
  void start_session(Stream stream);

  uint64_t add_live(std::function<void()> closer) {
    std::lock_guard lock(live_mutex);
    live.emplace(next_session, std::move(closer));
    return next_session++;
  }
  void remove_live(uint64_t id) {
    std::lock_guard lock(live_mutex);
    live.erase(id);
  }
  /// The closers run outside live_mutex: a closer may hold a session's last reference
  /// (its posted close already ran on an I/O thread), and the session's destructor takes
  /// live_mutex to leave `live`: under the lock that was a deadlock at shutdown.
  void close_all() {
    std::vector<std::function<void()>> closers;
    {
      std::lock_guard lock(live_mutex);
      for (auto& [id, closer] : live) closers.push_back(closer);
    }
    for (auto& closer : closers) closer();
  }
  void count(const std::function<void(HttpServerStats&)>& fn) {
    std::lock_guard lock(stats_mutex);
    fn(stats);
  }
  const HttpRoute* find(std::string_view method, std::string_view path, bool& path_known) const {
    path_known = false;
    for (const auto& r : routes) {
      if (r.path != path) continue;
      path_known = true;
      if (r.method == method) return &r;
    }
    return nullptr;
  }
};

namespace {

/// One connection: reads a header (no thread held meanwhile), hands the request to a
/// handler thread, writes the reply, and reads the next header. Every socket operation
/// runs on the connection's strand; a handler thread reading the body waits on one.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  // The buffer is capped: Beast bounds a header (header_limit) but not a chunk's size
  // line, whose extension could otherwise grow it without end (a read past the cap fails).
  Session(HttpServer::Impl& server, Stream stream)
      : m_server(server), m_stream(std::move(stream)), m_buffer(size_t{server.opt.header_limit} + (64 << 10)) {}
  ~Session() {
    m_server.remove_live(m_live);
    m_server.count([](HttpServerStats& s) { s.connections--; });
  }

  void start() {
    std::weak_ptr<Session> weak = this->shared_from_this();
    m_live = m_server.add_live([weak] {
      if (auto self = weak.lock())
        asio::post(self->m_stream.get_executor(), [self] { beast::get_lowest_layer(self->m_stream).close(); });
    });
    asio::dispatch(m_stream.get_executor(), [self = this->shared_from_this()] { self->handshake(); });
  }

 private:
  auto& lowest() { return beast::get_lowest_layer(m_stream); }
  std::chrono::seconds timeout() const { return std::chrono::seconds(m_server.opt.read_timeout); }

  void handshake() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      read_header();
    } else {
      lowest().expires_after(timeout());
      m_stream.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (!ec) self->read_header();
      });
    }
  }

  void read_header() {
    m_parser.emplace();
    m_parser->header_limit(m_server.opt.header_limit);
    // The handler judges the body's size (by method and caller) before it reads it.
    m_parser->body_limit(std::numeric_limits<uint64_t>::max());
    m_failed = false;
    m_continued = false;
    lowest().expires_after(timeout());
    http::async_read_header(m_stream, m_buffer, *m_parser,
                            [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_method).category() && ec != http::error::end_of_stream &&
          ec != http::error::partial_message) {
        // A header too large or malformed: say so, then close (the rest is not HTTP).
        m_server.count([](HttpServerStats& s) { s.header_refusals++; });
        HttpResponse res;
        res.status = ec == http::error::header_limit ? 431 : 400;
        res.body = ec == http::error::header_limit ? "request header too large\n" : "malformed request: " + ec.message() + "\n";
        res.close = true;
        m_keep_alive = false;
        write(std::move(res));
      } else {
        close();
      }
      return;
    }
    m_server.count([](HttpServerStats& s) { s.requests_total++; });
    auto& req = m_parser->get();
    m_keep_alive = req.keep_alive();
    m_version = req.version();
    auto request = std::make_shared<HttpRequest>();
    request->method = std::string(sv(req.method_string()));
    std::string_view target = sv(req.target());
    request->path = std::string(target.substr(0, target.find('?')));
    for (const auto& field : req) request->headers.emplace_back(std::string(sv(field.name_string())), std::string(sv(field.value())));
    if (auto n = m_parser->content_length()) request->content_length = *n;
    m_expect_continue = iequals(sv(req[http::field::expect]), "100-continue");
    if (req.count(http::field::transfer_encoding) && !m_parser->chunked()) {
      // Beast reads such a body as empty, so its bytes would be taken for the next
      // request (a smuggling shape): refused and closed, as RFC 9112 section 6.3 asks.
      m_server.count([](HttpServerStats& s) { s.header_refusals++; });
      m_keep_alive = false;
      write(HttpResponse{400, "text/plain", "malformed request: a Transfer-Encoding other than chunked last\n", {}, true});
      return;
    }
    bool path_known = false;
    const HttpRoute* route = m_server.find(request->method, request->path, path_known);
    if (!route) {
      HttpResponse res;
      res.status = path_known ? 405 : 404;
      res.body = path_known ? "method not allowed\n" : "not found\n";
      write(std::move(res));
      return;
    }
    auto ready = std::chrono::steady_clock::now();
    m_server.pool.enqueue([self = this->shared_from_this(), route, request, ready] {
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - ready).count();
      self->m_server.count([&](HttpServerStats& s) {
        for (size_t i = 0; i < k_wait_buckets.size(); ++i)
          if (waited <= k_wait_buckets[i]) s.wait_buckets[i].second++;
        s.wait_sum += waited;
        s.wait_count++;
      });
      request->read_body = [self](const std::function<bool(const char*, size_t)>& sink) { return self->read_body(sink); };
      HttpResponse res;
      try {
        res = route->handler(*request);
      } catch (const std::exception& e) {
        res = HttpResponse{500, "text/plain", std::string("internal error: ") + e.what() + "\n", {}, true};
      }
      asio::post(self->m_stream.get_executor(), [self, res = std::move(res)]() mutable { self->write(std::move(res)); });
    });
  }

  /// Runs `op` (which starts one asynchronous operation and calls done(ec) from its
  /// completion) on the strand, and waits for it: for a handler thread.
  beast::error_code wait_for(const std::function<void(std::function<void(beast::error_code)>)>& op) {
    std::promise<beast::error_code> promise;
    auto result = promise.get_future();
    asio::post(m_stream.get_executor(), [&] { op([&](beast::error_code ec) { promise.set_value(ec); }); });
    return result.get();
  }

  /// On a handler thread: the body, a piece at a time.
  bool read_body(const std::function<bool(const char*, size_t)>& sink) {
    if (m_failed) return false;
    if (m_expect_continue && !m_continued) {
      // The client holds its body back until told to send it (curl does for bodies over 1 MiB).
      m_continued = true;
      static const std::string k_continue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto ec = wait_for([this](auto done) {
        lowest().expires_after(timeout());
        asio::async_write(m_stream, asio::buffer(k_continue), [done](beast::error_code e, size_t) { done(e); });
      });
      if (ec) {
        m_failed = true;
        return false;
      }
    }
    // Filled on the strand a socket read at a time, handed over up to a MiB at a time: a
    // hand-over costs two thread switches, a socket read gives 64 KiB at most. Sized by
    // the body's length, so a fleet's small requests do not hold a MiB each.
    auto length = m_parser->content_length();
    std::vector<char> piece(length ? std::clamp<uint64_t>(*length, 1, 1 << 20) : 64 << 10);
    while (!m_parser->is_done()) {
      size_t filled = 0;
      auto ec = wait_for([&](auto done) { fill(piece, filled, std::move(done)); });
      if (ec) {
        m_failed = true;
        return false;
      }
      if (filled > 0 && !sink(piece.data(), filled)) return true;
    }
    return true;
  }

  /// On the strand: reads body bytes into piece[filled..] until it is full, the body
  /// ends or a read fails, then calls done.
  void fill(std::vector<char>& piece, size_t& filled, std::function<void(beast::error_code)> done) {
    auto& body = m_parser->get().body();
    body.data = piece.data() + filled;
    body.size = piece.size() - filled;
    // The deadline moves on with each piece and each 64 KiB read, not with each socket
    // read: a slow, steady body is not cut, a body sent a byte at a time is.
    if (filled == 0 || m_unclocked >= (64 << 10)) {
      lowest().expires_after(timeout());
      m_unclocked = 0;
    }
    http::async_read_some(m_stream, m_buffer, *m_parser,
                          [this, self = this->shared_from_this(), &piece, &filled, done = std::move(done)](
                              beast::error_code ec, size_t) mutable {
                            if (ec == http::error::need_buffer) ec = {};
                            size_t now_filled = piece.size() - m_parser->get().body().size;
                            m_unclocked += now_filled - filled;
                            filled = now_filled;
                            if (ec || m_parser->is_done() || filled == piece.size())
                              done(ec);
                            else
                              fill(piece, filled, std::move(done));
                          });
  }

  void write(HttpResponse res) {
    // A body not read to its end cannot be told from the next request: close after it.
    bool keep = m_keep_alive && !res.close && !m_failed && m_parser && m_parser->is_done();
    auto reply = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(res.status), m_version);
    reply->set(http::field::content_type, res.content_type);
    for (auto& [k, v] : res.headers) reply->set(k, v);
    reply->body() = std::move(res.body);
    reply->keep_alive(keep);
    reply->prepare_payload();
    lowest().expires_after(timeout());
    http::async_write(m_stream, *reply, [self = this->shared_from_this(), reply, keep](beast::error_code ec, size_t) {
      if (ec || !keep)
        self->close();
      else
        self->read_header();
    });
  }

  void close() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      beast::error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      linger();
    } else {
      lowest().expires_after(std::chrono::seconds(1));
      m_stream.async_shutdown([self = this->shared_from_this()](beast::error_code) { self->lowest().close(); });
    }
  }

  /// Reads and drops what the client still sends (a refused body, up to the body limit,
  /// while bytes keep coming) before closing: a socket closed on unread bytes is reset,
  /// and the reset can take the reply with it.
  void linger() {
    // 2 s of silence ends it, and so does the read timeout in all: a client trickling
    // bytes does not hold the connection for the whole body limit.
    auto now = std::chrono::steady_clock::now();
    if (!m_linger_end) m_linger_end = now + std::max<std::chrono::steady_clock::duration>(timeout(), std::chrono::seconds(2));
    lowest().expires_after(std::min<std::chrono::steady_clock::duration>(std::chrono::seconds(2), *m_linger_end - now));
    lowest().async_read_some(asio::buffer(m_chunk), [self = this->shared_from_this()](beast::error_code ec, size_t n) {
      self->m_lingered += n;
      if (ec || self->m_lingered > self->m_server.opt.body_limit)
        self->lowest().close();
      else
        self->linger();
    });
  }

  HttpServer::Impl& m_server;
  Stream m_stream;
  beast::flat_buffer m_buffer;
  std::optional<http::request_parser<http::buffer_body>> m_parser;
  std::array<char, 16 << 10> m_chunk{};  ///< for lingering
  uint64_t m_live = 0;
  unsigned m_version = 11;
  bool m_keep_alive = false;
  bool m_expect_continue = false;
  bool m_continued = false;
  bool m_failed = false;  ///< the body's read failed: the connection is done
  uint64_t m_lingered = 0;
  std::optional<std::chrono::steady_clock::time_point> m_linger_end;
  uint64_t m_unclocked = 0;  ///< body bytes read since the read deadline last moved
};

}  // namespace

template <class Stream>
void HttpServer::Impl::start_session(Stream stream) {
  count([](HttpServerStats& s) {
    s.connections++;
    s.connections_total++;
  });
  std::make_shared<Session<Stream>>(*this, std::move(stream))->start();
}

void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors or a connection reset before it was taken: try again shortly.
      auto timer = std::make_shared<asio::steady_timer>(acceptor.get_executor(), std::chrono::milliseconds(50));
      timer->async_wait([this, timer](beast::error_code) { accept(); });
      return;
    }
    beast::error_code ignored;
    // Replies go out as two writes (header, body): without TCP_NODELAY the second waits
    // for the client's delayed ACK (~40 ms), once per request.
    socket.set_option(tcp::no_delay(true), ignored);
    if (tls)
      start_session(beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *tls));
    else
      start_session(beast::tcp_stream(std::move(socket)));
    accept();
  });
}

HttpServer::HttpServer(std::vector<HttpRoute> routes, const HttpServerOptions& options)
    : m_impl(std::make_unique<Impl>(std::move(routes), options)) {
  auto& impl = *m_impl;
  for (double b : k_wait_buckets) impl.stats.wait_buckets.emplace_back(b, 0);
  if (!options.tls_cert.empty()) {
    impl.tls.emplace(asio::ssl::context::tls_server);
    impl.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    beast::error_code ec;
    impl.tls->use_certificate_chain_file(options.tls_cert, ec);
    if (ec)
      throw Error(ErrorKind::usage,
                  "--tls-cert " + options.tls_cert + ": not a PEM certificate chain (" + ec.message() + ")");
    impl.tls->use_private_key_file(options.tls_key, asio::ssl::context::pem, ec);
    if (ec && ec.message().find("mismatch") != std::string::npos)
      throw Error(ErrorKind::usage, "--tls-key " + options.tls_key + " is not the key of --tls-cert " + options.tls_cert);
    if (ec)
      throw Error(ErrorKind::usage, "--tls-key " + options.tls_key + ": not a PEM private key (" + ec.message() + ")");
    // A key that is not the certificate's own is said here, not at the first handshake.
    if (SSL_CTX_check_private_key(impl.tls->native_handle()) != 1)
      throw Error(ErrorKind::usage, "--tls-key " + options.tls_key + " is not the key of --tls-cert " + options.tls_cert);
  }
  std::string where = options.host + ":" + std::to_string(options.port);
  auto cannot_bind = [&](const std::string& why) {
    return Error(ErrorKind::unavailable, "listen on " + where + ": cannot bind (" + why + "; is another server listening there?)");
  };
  beast::error_code ec;
  tcp::resolver resolver(impl.io);
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) throw cannot_bind(ec ? ec.message() : "no such address");
  tcp::endpoint endpoint = *endpoints.begin();
  impl.acceptor.open(endpoint.protocol(), ec);
  // No SO_REUSEPORT: a second server on the same address and port must fail to bind
  // rather than share the connections between two stores.
  if (!ec) impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl.acceptor.bind(endpoint, ec);
  if (!ec) impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw cannot_bind(ec.message());
  impl.port = impl.acceptor.local_endpoint().port();
}

HttpServer::~HttpServer() = default;

int HttpServer::port() const { return m_impl->port; }

void HttpServer::stop() { m_impl->stop_requested.store(true); }

void HttpServer::run() {
  auto& impl = *m_impl;
  impl.accept();
  // Two threads read and write sockets; handlers run on the pool's threads.
  std::vector<std::thread> io_threads;
  auto guard = asio::make_work_guard(impl.io);
  for (int i = 0; i < 2; ++i) io_threads.emplace_back([&] { impl.io.run(); });
  // stop() may come from a signal handler: it only sets a flag, read here.
  while (!impl.stop_requested.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  asio::post(impl.acceptor.get_executor(), [&] {  // the acceptor's strand: its handlers read it
    beast::error_code ignored;
    impl.acceptor.close(ignored);
  });
  impl.close_all();
  impl.pool.shutdown();  // handlers still reading a body see their connection closed
  guard.reset();
  impl.io.stop();
  for (auto& t : io_threads) t.join();
}

HttpServerStats HttpServer::stats() const {
  std::lock_guard lock(m_impl->stats_mutex);
  return m_impl->stats;
}

std::string HttpServer::metrics_text() const {
  auto s = stats();
  std::ostringstream out;
  out << "# HELP mirage_http_connections Connections open now.\n# TYPE mirage_http_connections gauge\n"
      << "mirage_http_connections " << s.connections << "\n"
      << "# HELP mirage_http_connections_total Connections accepted.\n# TYPE mirage_http_connections_total counter\n"
      << "mirage_http_connections_total " << s.connections_total << "\n"
      << "# HELP mirage_http_requests_total HTTP requests read.\n# TYPE mirage_http_requests_total counter\n"
      << "mirage_http_requests_total " << s.requests_total << "\n"
      << "# HELP mirage_http_header_refusals_total Requests refused for a header too large or malformed.\n"
      << "# TYPE mirage_http_header_refusals_total counter\n"
      << "mirage_http_header_refusals_total " << s.header_refusals << "\n"
      << "# HELP mirage_http_handler_wait_seconds Time from a request's complete header to its handler.\n"
      << "# TYPE mirage_http_handler_wait_seconds histogram\n";
  for (const auto& [le, n] : s.wait_buckets) out << "mirage_http_handler_wait_seconds_bucket{le=\"" << le << "\"} " << n << "\n";
  out << "mirage_http_handler_wait_seconds_bucket{le=\"+Inf\"} " << s.wait_count << "\n"
      << "mirage_http_handler_wait_seconds_sum " << s.wait_sum << "\n"
      << "mirage_http_handler_wait_seconds_count " << s.wait_count << "\n";
  return out.str();
}

}  // namespace mirage::server

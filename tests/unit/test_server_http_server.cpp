// The HTTP server on its own: routes, bodies read on demand, keep-alive, the header
// limit, idle connections holding no thread, the wait metric, stop().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "libmirage/server/http_server.hpp"
#include "libmirage/util/error.hpp"

using namespace mirage;
using namespace mirage::server;

namespace {

/// A server on 127.0.0.1 and a free port, served by a thread until the end of scope.
struct Running {
  explicit Running(std::vector<HttpRoute> routes, HttpServerOptions o = {}) {
    o.host = "127.0.0.1";
    o.port = 0;
    server = std::make_unique<HttpServer>(std::move(routes), o);
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  std::unique_ptr<HttpServer> server;
  std::thread thread;
};

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server closed: what it answered is still to be read
    off += static_cast<size_t>(n);
  }
}

/// One reply: its status line and headers, then Content-Length bytes of body.
std::string read_reply(int fd) {
  std::string data;
  char buf[4096];
  size_t body_at = std::string::npos;
  size_t want = 0;
  for (;;) {
    if (body_at == std::string::npos) {
      body_at = data.find("\r\n\r\n");
      if (body_at != std::string::npos) {
        body_at += 4;
        auto cl = data.find("Content-Length: ");
        want = cl < body_at ? std::stoul(data.substr(cl + 16)) : 0;
      }
    }
    if (body_at != std::string::npos && data.size() >= body_at + want) return data.substr(0, body_at + want);
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

std::string status_of(const std::string& reply) { return reply.substr(0, reply.find("\r\n")); }
std::string body_of(const std::string& reply) { return reply.substr(reply.find("\r\n\r\n") + 4); }

std::vector<HttpRoute> echo_routes() {
  std::vector<HttpRoute> r;
  r.push_back({"GET", "/hello", [](HttpRequest& req) {
                 return HttpResponse{200, "text/plain", "hello " + req.header("x-name"), {}, false};
               }});
  // Reads the body and answers its length and a checksum; or refuses it unread.
  r.push_back({"POST", "/sum", [](HttpRequest& req) {
                 if (req.header("X-Refuse") == "1") return HttpResponse{413, "text/plain", "no\n", {}, true};
                 uint64_t n = 0, sum = 0;
                 bool ok = req.read_body([&](const char* p, size_t k) {
                   for (size_t i = 0; i < k; ++i) sum += static_cast<unsigned char>(p[i]);
                   n += k;
                   return true;
                 });
                 return HttpResponse{200, "text/plain", (ok ? "ok " : "failed ") + std::to_string(n) + " " + std::to_string(sum),
                                     {{"X-Seen", std::to_string(n)}}, false};
               }});
  return r;
}

}  // namespace

TEST_CASE("http server: routes, 404 and 405, keep-alive") {
  Running s(echo_routes());
  int fd = connect_to(s.server->port());
  send_all(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Name: you\r\n\r\n");
  auto r = read_reply(fd);
  CHECK(status_of(r) == "HTTP/1.1 200 OK");
  CHECK(body_of(r) == "hello you");
  // The same connection serves the next request.
  send_all(fd, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(status_of(read_reply(fd)) == "HTTP/1.1 404 Not Found");
  send_all(fd, "GET /sum HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(status_of(read_reply(fd)) == "HTTP/1.1 405 Method Not Allowed");
  send_all(fd, "GET /hello?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(status_of(read_reply(fd)) == "HTTP/1.1 200 OK");
  ::close(fd);
}

TEST_CASE("http server: bodies, fixed length and chunked, read on demand") {
  Running s(echo_routes());
  int fd = connect_to(s.server->port());
  std::string body(3 << 20, 'a');  // larger than a hand-over (1 MiB) and a socket read
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  auto r = read_reply(fd);
  CHECK(body_of(r) == "ok " + std::to_string(body.size()) + " " + std::to_string(uint64_t('a') * body.size()));
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  CHECK(body_of(read_reply(fd)) == "ok 5 " + std::to_string(97 + 98 + 99 + 100 + 101));
  // Expect: 100-continue is answered when the handler reads, not before.
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  auto cont = read_reply(fd);
  CHECK(status_of(cont) == "HTTP/1.1 100 Continue");
  send_all(fd, "wxyz");
  CHECK(body_of(read_reply(fd)) == "ok 4 " + std::to_string(119 + 120 + 121 + 122));
  ::close(fd);
}

TEST_CASE("http server: a body refused unread closes the connection after the reply") {
  Running s(echo_routes());
  int fd = connect_to(s.server->port());
  std::string body(2 << 20, 'b');
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nX-Refuse: 1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  auto r = read_reply(fd);
  CHECK(status_of(r) == "HTTP/1.1 413 Payload Too Large");
  CHECK(r.find("Connection: close") != std::string::npos);
  char c;
  CHECK(::recv(fd, &c, 1, 0) == 0);  // closed, after the body was drained (no reset)
  ::close(fd);
}

TEST_CASE("http server: a header over the limit gets 431 and the connection closes") {
  HttpServerOptions o;
  o.header_limit = 8 << 10;
  Running s(echo_routes(), o);
  int fd = connect_to(s.server->port());
  std::string req = "GET /hello HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 200; ++i) req += "X-Pad-" + std::to_string(i) + ": " + std::string(60, 'p') + "\r\n";
  send_all(fd, req + "\r\n");
  auto r = read_reply(fd);
  CHECK(status_of(r) == "HTTP/1.1 431 Request Header Fields Too Large");
  CHECK(s.server->stats().header_refusals == 1);
  ::close(fd);
  fd = connect_to(s.server->port());
  send_all(fd, "NOT HTTP\r\n\r\n");
  CHECK(status_of(read_reply(fd)) == "HTTP/1.1 400 Bad Request");
  ::close(fd);
}

TEST_CASE("http server: idle and half-sent connections hold no handler thread") {
  HttpServerOptions o;
  o.threads = 1;
  o.max_handlers = 1;
  Running s(echo_routes(), o);
  std::vector<int> idle;
  for (int i = 0; i < 50; ++i) {  // kept alive after a request
    int fd = connect_to(s.server->port());
    send_all(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(status_of(read_reply(fd)) == "HTTP/1.1 200 OK");
    idle.push_back(fd);
  }
  for (int i = 0; i < 50; ++i) {  // a header begun, never finished
    int fd = connect_to(s.server->port());
    send_all(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    idle.push_back(fd);
  }
  auto t0 = std::chrono::steady_clock::now();
  int fd = connect_to(s.server->port());
  send_all(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(status_of(read_reply(fd)) == "HTTP/1.1 200 OK");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  auto st = s.server->stats();
  CHECK(st.connections == 101);
  CHECK(st.wait_count == 51);
  CHECK(s.server->metrics_text().find("mirage_http_handler_wait_seconds_count 51") != std::string::npos);
  ::close(fd);
  for (int f : idle) ::close(f);
}

TEST_CASE("http server: a silent connection is dropped after the read timeout") {
  HttpServerOptions o;
  o.read_timeout = 1;
  Running s(echo_routes(), o);
  int fd = connect_to(s.server->port());
  send_all(fd, "GET /hel");
  char c;
  auto t0 = std::chrono::steady_clock::now();
  CHECK(::recv(fd, &c, 1, 0) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(4));
  ::close(fd);
}

TEST_CASE("http server: a taken port is an unavailable error naming the address") {
  Running s(echo_routes());
  HttpServerOptions o;
  o.host = "127.0.0.1";
  o.port = s.server->port();
  try {
    HttpServer second(echo_routes(), o);
    FAIL("bound twice");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::unavailable);
    CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(o.port)) != std::string::npos);
  }
}

TEST_CASE("http server: a Transfer-Encoding other than chunked last is refused, not read as the next request") {
  Running s(echo_routes());
  for (std::string te : {"gzip", "chunked, gzip"}) {
    int fd = connect_to(s.server->port());
    // Read as an empty body, these bytes would be a second request on the connection.
    send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                     "\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nX-Name: smuggled\r\n\r\n");
    auto r = read_reply(fd);
    CHECK(status_of(r) == "HTTP/1.1 400 Bad Request");
    CHECK(r.find("Connection: close") != std::string::npos);
    CHECK(read_reply(fd).empty());  // closed: no reply to the smuggled request
    ::close(fd);
  }
}

TEST_CASE("http server: a chunk-size line without end is cut at a bound, not buffered") {
  Running s(echo_routes());
  int fd = connect_to(s.server->port());
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=");
  send_all(fd, std::string(1 << 20, 'e'));  // 1 MiB, far past the buffer's cap
  auto r = read_reply(fd);
  CHECK(status_of(r) == "HTTP/1.1 200 OK");
  CHECK(body_of(r).rfind("failed ", 0) == 0);  // the handler's read failed at the cap
  ::close(fd);
}

TEST_CASE("http server: a body sent a byte at a time is cut after the read timeout") {
  HttpServerOptions o;
  o.read_timeout = 1;
  Running s(echo_routes(), o);
  int fd = connect_to(s.server->port());
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
  auto start = std::chrono::steady_clock::now();
  bool cut = false;
  for (int i = 0; i < 40 && !cut; ++i) {  // 4 s at most, a byte each 100 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cut = ::send(fd, "x", 1, MSG_NOSIGNAL) < 0;
    char c;
    if (!cut && ::recv(fd, &c, 1, MSG_DONTWAIT) == 0) cut = true;
  }
  CHECK(cut);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2500));
  ::close(fd);
}

TEST_CASE("http server: the drain of a refused body ends after the read timeout though bytes keep coming") {
  HttpServerOptions o;
  o.read_timeout = 2;
  Running s(echo_routes(), o);
  int fd = connect_to(s.server->port());
  send_all(fd, "POST /sum HTTP/1.1\r\nHost: x\r\nX-Refuse: 1\r\nContent-Length: 100000\r\n\r\n");
  CHECK(status_of(read_reply(fd)) == "HTTP/1.1 413 Payload Too Large");
  auto start = std::chrono::steady_clock::now();
  bool cut = false;
  for (int i = 0; i < 50 && !cut; ++i) {  // 5 s at most, a byte each 100 ms (never 2 s silent)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cut = ::send(fd, "x", 1, MSG_NOSIGNAL) < 0;
  }
  CHECK(cut);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(4000));
  ::close(fd);
}

// The HTTP request path from any client, as serve_rpc takes it from the HTTP server:
// input line 1 is the Authorization header, line 2 X-Mirage-Method, line 3 the
// Content-Length ("-" for none), the rest the body, read in pieces of varying size.
// One server on a temporary data directory answers them all; it must never crash,
// and every reply must carry a status that matches its error kind.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "libmirage/server/http_rpc.hpp"
#include "tests/fuzz/fuzz.hpp"

using namespace mirage;

namespace {

struct Fixture {
  std::filesystem::path dir;
  std::string admin;
  std::unique_ptr<server::Service> service;
  server::BodyBudget budget{64u << 20};
  Fixture() {
    char tmpl[] = "/tmp/mirage-fuzz-http.XXXXXX";
    dir = ::mkdtemp(tmpl);
    admin = server::init_data_dir(dir / "data");
    service = std::make_unique<server::Service>(dir / "data", false);
  }
  ~Fixture() {
    service.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

std::string take_line(std::string_view& in) {
  auto nl = in.find('\n');
  std::string line(in.substr(0, nl));
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& f = fixture();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  server::HttpRpcRequest req;
  req.authorization = take_line(in);
  if (req.authorization == "ADMIN") req.authorization = "Bearer " + f.admin;
  req.method = take_line(in);
  std::string length = take_line(in);
  if (length != "-") req.content_length = std::strtoull(length.c_str(), nullptr, 10);
  std::string body(in);
  req.read_body = [&](const std::function<bool(const char*, size_t)>& sink) {
    size_t at = 0, step = 1 + body.size() % 7;
    while (at < body.size()) {
      size_t n = std::min(step, body.size() - at);
      if (!sink(body.data() + at, n)) return false;
      at += n;
      step = step * 3 % 4096 + 1;
    }
    return true;
  };
  auto out = server::serve_rpc(*f.service, f.budget, req, std::chrono::seconds(0));
  if (out.status != 401 && out.status != 413 && out.status != server::http_status(out.reply)) abort();
  return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
  auto seed = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  return {seed("\nserver.info\n-\n{\"v\":1,\"id\":1,\"method\":\"server.info\"}\n"),
          seed("ADMIN\ndevice.list\n34\n{\"v\":1,\"id\":[[1]],\"method\":\"device.list\"}\n"),
          seed("\n\n-\n{\"v\":1,\"id\":1,\"method\":\"device.register\",\"params\":{\"device_id\":\"d1\",\"hostname\":\"h\","
               "\"inventory\":{\"a\":{\"b\":[1,2]}}}}\n"),
          seed("bearer mdc_d1.00\nsnapshot.list\n-\n{\"v\":1,\"method\":\"snapshot.list\",\"params\":{\"device_id\":\"d1\"}}\n"),
          seed("ADMIN\nchunks.missing\n-\n{\"v\":1,\"method\":\"chunks.missing\",\"binary\":32}\n"
               "0123456789abcdef0123456789abcdef"),
          seed("ADMIN\n\n-\n{\"v\":1,\"method\":\"token.list\"}\n")};
}

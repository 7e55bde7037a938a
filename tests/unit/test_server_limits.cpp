// server::Limits: parsing --limit NAME=VALUE, and lowered limits taking effect in the
// service, the HTTP request path and the frame reader.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "libmirage/server/http_rpc.hpp"
#include "cmd/common/tool.hpp"
#include "libmirage/server/limits.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/util/digest.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

/// A fresh data directory with its admin token, removed at the end of the test.
struct DataDir {
  fs::path dir;
  std::string admin;
  DataDir() {
    std::string tmpl = (fs::temp_directory_path() / "mirage-limits-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    admin = server::init_data_dir(dir / "data");
  }
  ~DataDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path data() const { return dir / "data"; }
};

server::Limits with(std::initializer_list<const char*> specs) {
  server::Limits l;
  for (const char* s : specs) l.set(s, tool::parse_size);
  return l;
}

/// The message of the usage error set(spec) throws ("" when it throws none).
std::string refusal(const std::string& spec) {
  server::Limits l;
  try {
    l.set(spec, tool::parse_size);
  } catch (const Error& e) {
    return e.kind() == ErrorKind::usage ? e.what() : "not usage: " + std::string(e.what());
  }
  return "";
}

proto::Request request(const std::string& method, nlohmann::json params, std::vector<uint8_t> binary = {}) {
  proto::Request r;
  r.method = method;
  r.params = std::move(params);
  r.binary = std::move(binary);
  return r;
}

std::string reply_kind(const proto::Reply& r) { return r.error ? std::string(kind_name(r.error->kind())) : "ok"; }

}  // namespace

TEST_SUITE_BEGIN("server::Limits");

TEST_CASE("sizes take K, M and G suffixes, counts and seconds are plain numbers") {
  auto l = with({"upload-body=80M", "read-body=64K", "layer-body=1G", "request-body=4096", "pending-devices=10000",
                 "body-wait=20", "frame-depth=8"});
  CHECK(l.upload_body == 80u << 20);
  CHECK(l.read_body == 64u << 10);
  CHECK(l.layer_body == 1u << 30);
  CHECK(l.request_body == 4096);
  CHECK(l.pending_devices == 10000);
  CHECK(l.body_wait == 20);
  CHECK(l.frame_depth == 8);
  CHECK(l.was_set("upload-body"));
  CHECK_FALSE(l.was_set("stats"));
  SUBCASE("a later setting wins") {
    l.set("upload-body=1M", tool::parse_size);
    CHECK(l.upload_body == 1u << 20);
  }
}

TEST_CASE("the defaults are the documented ones") {
  server::Limits l;
  CHECK(l.body_limit("chunks.put") == 80u << 20);
  CHECK(l.body_limit("chunks.get") == 4u << 20);
  CHECK(l.body_limit("chunks.missing") == 4u << 20);
  CHECK(l.body_limit("chunks.delta") == 4u << 20);
  CHECK(l.body_limit("layer.commit") == 17u << 20);
  CHECK(l.body_limit("device.list") == 1u << 20);
  CHECK(l.anonymous_body == 64u << 10);
  CHECK(l.pending_devices == 10000);
  CHECK(l.frame().max_header == proto::k_max_header);
  CHECK(l.frame().max_depth == proto::k_max_depth);
  CHECK(l.max_body() == 80u << 20);
}

TEST_CASE("unknown names, malformed, zero, negative and absurd values are usage errors naming the range") {
  CHECK(refusal("no-such-limit=1").find("no-such-limit") != std::string::npos);
  CHECK(refusal("upload-body").find("NAME=VALUE") != std::string::npos);
  CHECK(refusal("=5").find("NAME=VALUE") != std::string::npos);
  for (const char* spec : {"upload-body=", "upload-body=abc", "upload-body=0", "upload-body=-1", "upload-body=2G",
                           "upload-body=12Q", "upload-body=99999999999999999999", "upload-body=1K"}) {
    CAPTURE(spec);
    std::string m = refusal(spec);
    CHECK(m.find("upload-body") != std::string::npos);
    CHECK(m.find("from 64K to 1G") != std::string::npos);
  }
  for (const char* spec : {"pending-devices=0", "pending-devices=-3", "pending-devices=10K", "pending-devices=1.5",
                           "pending-devices=99999999999", "body-wait=0", "body-wait=3601", "get-ids= 5"}) {
    CAPTURE(spec);
    std::string m = refusal(spec);
    CHECK(m.find("from ") != std::string::npos);
  }
  SUBCASE("the dedicated flags are named, not taken twice") {
    CHECK(refusal("read-timeout=5").find("--read-timeout") != std::string::npos);
    CHECK(refusal("max-body-memory=1G").find("--max-body-memory") != std::string::npos);
  }
}

TEST_CASE("the frame limits may be lowered, never raised past the parser's ceilings") {
  CHECK(refusal("frame-header=17M").find("from 4K to 16M") != std::string::npos);
  CHECK(refusal("frame-depth=65").find("from 8 to 64") != std::string::npos);
  CHECK(refusal("frame-header=16M").empty());
  SUBCASE("a FrameLimits above the ceilings counts as them") {
    std::string deep = "{\"v\":1,\"method\":\"x\",\"params\":{\"a\":" + std::string(70, '[') + std::string(70, ']') + "}}\n";
    std::vector<uint8_t> bytes(deep.begin(), deep.end());
    CHECK_ERROR_KIND(proto::decode_frame(std::span<const uint8_t>(bytes), proto::FrameLimits{1u << 30, 1000}),
                     ErrorKind::usage);
  }
}

TEST_CASE("a lowered frame-depth or frame-header refuses what the defaults take") {
  std::string nested = "{\"v\":1,\"method\":\"x\",\"params\":{\"a\":[[[[[[[[[[1]]]]]]]]]]}}\n";
  std::vector<uint8_t> bytes(nested.begin(), nested.end());
  CHECK_NOTHROW(proto::decode_frame(std::span<const uint8_t>(bytes)));
  CHECK_ERROR_KIND(proto::decode_frame(std::span<const uint8_t>(bytes), with({"frame-depth=8"}).frame()), ErrorKind::usage);
  std::string big = "{\"v\":1,\"method\":\"x\",\"params\":{\"a\":\"" + std::string(8000, 'x') + "\"}}\n";
  std::vector<uint8_t> big_bytes(big.begin(), big.end());
  CHECK_NOTHROW(proto::decode_frame(std::span<const uint8_t>(big_bytes)));
  CHECK_ERROR_KIND(proto::decode_frame(std::span<const uint8_t>(big_bytes), with({"frame-header=4K"}).frame()),
                   ErrorKind::usage);
  SUBCASE("over stdio too, a header that arrives whole in one read") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    util::Fd rd(fds[0]), wr(fds[1]);
    util::write_all(wr.get(), big_bytes, "pipe");
    wr = util::Fd();
    proto::FrameReader reader(rd.get(), with({"frame-header=4K"}).frame());
    CHECK_ERROR_KIND(reader.next(), ErrorKind::usage);
  }
}

TEST_CASE("pending-devices=2: the third anonymous register is refused as unavailable") {
  DataDir d;
  server::Service service(d.data(), false, with({"pending-devices=2"}));
  server::Caller anonymous{server::Role::anonymous, ""};
  CHECK(reply_kind(service.handle(request("device.register", {{"device_id", "one"}}), anonymous)) == "ok");
  CHECK(reply_kind(service.handle(request("device.register", {{"device_id", "two"}}), anonymous)) == "ok");
  auto third = service.handle(request("device.register", {{"device_id", "three"}}), anonymous);
  REQUIRE(reply_kind(third) == "unavailable");
  CHECK(std::string(third.error->what()).find("pending-devices") != std::string::npos);
  // An admin still registers (it accepts what it registers).
  CHECK(reply_kind(service.handle(request("device.register", {{"device_id", "four"}}), server::Caller{})) == "ok");
  SUBCASE("with the default, a third is taken") {
    server::Service roomy(d.data(), false);
    CHECK(reply_kind(roomy.handle(request("device.register", {{"device_id", "five"}}), anonymous)) == "ok");
  }
}

TEST_CASE("lowered per-request bounds refuse with usage") {
  DataDir d;
  server::Service service(d.data(), false, with({"get-ids=2", "delta-pairs=1", "inventory=1K"}));
  server::Caller admin;
  std::vector<util::Digest> ids(3);
  for (size_t i = 0; i < ids.size(); ++i) ids[i].bytes[0] = static_cast<uint8_t>(i + 1);
  CHECK(reply_kind(service.handle(request("chunks.get", nlohmann::json::object(), proto::encode_ids(ids)), admin)) ==
        "usage");
  std::vector<util::Digest> pairs(4);
  CHECK(reply_kind(service.handle(request("chunks.delta", nlohmann::json::object(), proto::encode_ids(pairs)), admin)) ==
        "usage");
  nlohmann::json inventory = {{"dmi", std::string(2000, 'x')}};
  CHECK(reply_kind(service.handle(request("device.register", {{"device_id", "inv"}, {"inventory", inventory}}), admin)) ==
        "usage");
  SUBCASE("the defaults take the same requests past the bound (a missing chunk is not_found)") {
    server::Service roomy(d.data(), false);
    CHECK(reply_kind(roomy.handle(request("chunks.get", nlohmann::json::object(), proto::encode_ids(ids)), admin)) ==
          "not_found");
    CHECK(reply_kind(roomy.handle(request("device.register", {{"device_id", "inv"}, {"inventory", inventory}}), admin)) ==
          "ok");
  }
}

TEST_CASE("a lowered upload-body answers 413 to a declared Content-Length above it") {
  DataDir d;
  server::BodyBudget budget(256u << 20);
  server::HttpRpcRequest in;
  in.authorization = "Bearer " + d.admin;
  in.method = "chunks.put";
  in.content_length = 128u << 10;
  in.read_body = [](const std::function<bool(const char*, size_t)>&) { return true; };
  {
    server::Service service(d.data(), false, with({"upload-body=64K"}));
    auto out = server::serve_rpc(service, budget, in, std::chrono::seconds(0));
    CHECK(out.status == 413);
    CHECK(reply_kind(out.reply) == "usage");
  }
  server::Service roomy(d.data(), false);
  auto out = server::serve_rpc(roomy, budget, in, std::chrono::seconds(0));
  CHECK(out.status != 413);
  SUBCASE("anonymous-body holds requests without a token") {
    server::Service service(d.data(), false, with({"anonymous-body=4K"}));
    server::HttpRpcRequest anon = in;
    anon.authorization.clear();
    anon.method = "device.register";
    anon.content_length = 8u << 10;
    CHECK(server::serve_rpc(service, budget, anon, std::chrono::seconds(0)).status == 413);
    CHECK(server::serve_rpc(roomy, budget, anon, std::chrono::seconds(0)).status != 413);
  }
}

TEST_CASE("limits_report shows each limit's effective value and default") {
  auto rows = server::limits_report(with({"upload-body=1M", "pending-devices=2"}), server::HttpOptions{});
  auto row = [&](const std::string& name) {
    for (const auto& r : rows)
      if (r["name"] == name) return r;
    return nlohmann::json();
  };
  CHECK(row("upload-body")["value"] == 1u << 20);
  CHECK(row("upload-body")["default"] == 80u << 20);
  CHECK(row("pending-devices")["value"] == 2);
  CHECK(row("read-timeout")["flag"] == "--read-timeout");
  CHECK(row("hostname")["value"] == 253);
  for (const auto& l : server::limit_table()) CHECK(!row(l.name).is_null());
}

TEST_SUITE_END();

TEST_CASE("chunks.put: the store's owner gets its records' framing checked, any other caller every chunk decoded") {
  DataDir d;
  server::Service service(d.data(), false);
  CHECK(service.data_owned_by_this_user());  // made by this test's user
  std::string text(5000, 'w');
  auto bytes = std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  std::vector<uint8_t> forged, misframed;
  store::append_plain(forged, util::sha256(std::string_view("another chunk")), bytes, 3);
  store::append_plain(misframed, util::sha256(text), bytes, 3);
  misframed[33] ^= 1;  // the record's raw size against its frame's
  server::Caller admin{server::Role::admin, "admin"};
  server::Caller owner{server::Role::admin, "local", true};
  CHECK(reply_kind(service.handle(request("chunks.put", nlohmann::json::object(), forged), admin)) == "integrity");
  CHECK(reply_kind(service.handle(request("chunks.put", nlohmann::json::object(), misframed), owner)) == "integrity");
  CHECK(reply_kind(service.handle(request("chunks.put", nlohmann::json::object(), forged), owner)) == "ok");
}

#include <doctest/doctest.h>

#include <unistd.h>

#include "libmirage/proto/frame.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::proto;

TEST_SUITE_BEGIN("proto::Frame");

TEST_CASE("a request with a binary part round-trips through a pipe") {
  Request r;
  r.id = 7;
  r.method = "chunks.put";
  r.params = {{"device_id", "d1"}};
  r.binary = {0, 1, 2, '\n', 255};
  auto bytes = encode_request(r);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  util::Fd rd(fds[0]), wr(fds[1]);
  util::write_all(wr.get(), bytes, "pipe");
  util::write_all(wr.get(), bytes, "pipe");
  wr = util::Fd();
  FrameReader reader(rd.get());
  for (int i = 0; i < 2; ++i) {
    auto f = reader.next();
    REQUIRE(f);
    nlohmann::json id;
    auto back = parse_request(std::move(*f), &id);
    CHECK(back.method == "chunks.put");
    CHECK(back.binary == r.binary);
    CHECK(back.params["device_id"] == "d1");
  }
  CHECK_FALSE(reader.next());
}

TEST_CASE("malformed frames are errors, not crashes") {
  auto bad = [](std::string s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  CHECK_ERROR_KIND(decode_frame(bad("not json\n")), ErrorKind::usage);
  CHECK_ERROR_KIND(decode_frame(bad("{\"v\":1}")), ErrorKind::usage);
  CHECK_ERROR_KIND(decode_frame(bad("{\"binary\":5}\nabc")), ErrorKind::usage);
  CHECK_ERROR_KIND(decode_frame(bad("{\"binary\":-1}\n")), ErrorKind::usage);
  CHECK_ERROR_KIND(decode_frame(bad("[1,2]\n")), ErrorKind::usage);
  nlohmann::json id;
  CHECK_ERROR_KIND(parse_request(decode_frame(bad("{\"method\":\"x\"}\n")), &id), ErrorKind::usage);
  CHECK_ERROR_KIND(parse_request(decode_frame(bad("{\"v\":1,\"method\":\"x\",\"params\":[]}\n")), &id), ErrorKind::usage);
  try {
    parse_request(decode_frame(bad("{\"v\":99,\"id\":3,\"method\":\"x\"}\n")), &id);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::precondition);
    CHECK(std::string(e.what()).find("version") != std::string::npos);
    CHECK(id == 3);
  }
}

TEST_CASE("a stream cut mid-frame is reported as unavailable") {
  std::string s = "{\"binary\":10}\nabc";
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  util::Fd rd(fds[0]), wr(fds[1]);
  util::write_all(wr.get(), std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()), "pipe");
  wr = util::Fd();
  FrameReader reader(rd.get());
  try {
    reader.next();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::unavailable);
  }
}

TEST_CASE("id lists round-trip and a ragged list is refused") {
  std::vector<util::Digest> ids = {util::sha256(std::string_view("a")), util::sha256(std::string_view("b"))};
  auto bin = encode_ids(ids);
  CHECK(bin.size() == 64);
  CHECK(decode_ids(bin) == ids);
  bin.pop_back();
  CHECK_ERROR_KIND(decode_ids(bin), ErrorKind::usage);
  CHECK(decode_ids(std::span<const uint8_t>()).empty());
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("proto::Frame");

TEST_CASE("an error reply carries its reason, and a reply without one has none") {
  // The endpoint rescans on reason "incomplete": it must arrive as a field, not in the text.
  Reply with{7, nlohmann::json::object(),
             Error(ErrorKind::precondition, "snapshot of device d is incomplete: 1 objects missing", std::string(k_reason_incomplete)),
             {}};
  auto got = parse_reply(decode_frame(encode_reply(with)));
  REQUIRE(got.error);
  CHECK(got.error->kind() == ErrorKind::precondition);
  CHECK(got.error->reason() == k_reason_incomplete);
  CHECK(decode_frame(encode_reply(with)).header["error"]["reason"] == "incomplete");

  Reply without{8, nlohmann::json::object(), Error(ErrorKind::precondition, "snapshot of device d is incomplete"), {}};
  auto frame = decode_frame(encode_reply(without));
  CHECK_FALSE(frame.header["error"].contains("reason"));
  got = parse_reply(std::move(frame));
  REQUIRE(got.error);
  CHECK(got.error->reason().empty());  // the word in the message is not a reason
}

TEST_CASE("a reply's header line followed by its binary part is the whole reply") {
  // The stdio server writes the two apart (a large chunks.get reply is not copied).
  Reply r{9, {{"count", 2}}, std::nullopt, {1, 2, 3, '\n', 0}};
  auto head = encode_reply_header(r);
  REQUIRE_FALSE(head.empty());
  CHECK(head.back() == '\n');
  CHECK(std::count(head.begin(), head.end(), uint8_t('\n')) == 1);
  std::vector<uint8_t> joined = head;
  joined.insert(joined.end(), r.binary.begin(), r.binary.end());
  CHECK(joined == encode_reply(r));
  auto got = parse_reply(decode_frame(joined));
  CHECK(got.result["count"] == 2);
  CHECK(got.binary == r.binary);
  // Without a binary part the header alone is the reply.
  Reply empty{10, {{"ok", true}}, std::nullopt, {}};
  CHECK(encode_reply_header(empty) == encode_reply(empty));
}

TEST_CASE("rethrowing with context keeps the kind and the reason") {
  try {
    try {
      throw Error(ErrorKind::precondition, "inner", "incomplete");
    } catch (...) {
      rethrow_with_context("commit");
    }
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::precondition);
    CHECK(e.reason() == "incomplete");
    CHECK(std::string(e.what()) == "commit: inner");
  }
}

TEST_SUITE_END();

#include <doctest/doctest.h>

#include "libmirage/tree/tree.hpp"
#include "libmirage/util/bytes.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::tree;

namespace {
Entry file(std::string name, uint64_t size) {
  Entry e;
  e.name = std::move(name);
  e.kind = Kind::file;
  e.mode = 04755;
  e.uid = 1000;
  e.gid = 100;
  e.mtime_ns = 1700000000123456789;
  e.size = size;
  if (size) e.chunks.push_back({util::sha256(std::string_view("x")), size});
  e.xattrs = {{"user.b", "2"}, {"security.capability", std::string("\x01\x00\x00\x02", 4)}};
  return e;
}
}  // namespace

TEST_SUITE_BEGIN("tree::Tree");

TEST_CASE("encode then decode gives the same tree, in canonical order") {
  Tree t;
  t.entries.push_back(file("zeta", 10));
  Entry link;
  link.name = "a link";
  link.kind = Kind::symlink;
  link.target = "../x/y";
  link.mtime_ns = -5;
  t.entries.push_back(link);
  Entry dir;
  dir.name = std::string("bad\xff\n", 5);
  dir.kind = Kind::dir;
  dir.subtree = util::sha256(std::string_view("sub"));
  t.entries.push_back(dir);
  Entry dev;
  dev.name = "null";
  dev.kind = Kind::chardev;
  dev.rdev = 0x103;
  t.entries.push_back(dev);
  auto bytes = encode(t);
  Tree back = decode(bytes, "test");
  REQUIRE(back.entries.size() == 4);
  CHECK(back.entries[0].name == "a link");
  CHECK(back.entries[0].target == "../x/y");
  CHECK(back.entries[0].mtime_ns == -5);
  CHECK(back.entries[1].name == std::string("bad\xff\n", 5));
  CHECK(back.entries[3].name == "zeta");
  CHECK(back.entries[3].xattrs[0].name == "security.capability");
  CHECK(back.find("null")->rdev == 0x103);
  CHECK(back.find("nope") == nullptr);
  // Canonical: the same content in another order encodes to the same bytes.
  std::reverse(t.entries.begin(), t.entries.end());
  CHECK(encode(t) == bytes);
}

TEST_CASE("a hand-crafted tree with an unsafe name is refused") {
  for (std::string bad : std::vector<std::string>{"..", ".", "a/b", std::string("a\0b", 3), ""}) {
    util::ByteWriter w;
    w.raw(std::string_view("MTR1"));
    w.varint(1);
    w.str(bad);
    w.u8(1);
    for (int i = 0; i < 3; ++i) w.varint(0);
    w.svarint(0);
    w.varint(0);
    w.varint(0);
    w.str("");
    w.varint(0);
    w.varint(0);
    w.str("");
    w.u8(0);
    CHECK_ERROR_KIND(decode(w.data(), "crafted"), ErrorKind::integrity);
  }
}

TEST_CASE("decode rejects truncation, trailing bytes, bad order and size mismatch") {
  Tree t;
  t.entries.push_back(file("a", 10));
  t.entries.push_back(file("b", 0));
  auto bytes = encode(t);
  for (size_t n = 0; n < bytes.size(); ++n) CHECK_ERROR_KIND(decode(std::span(bytes).first(n), "t"), ErrorKind::integrity);
  auto longer = bytes;
  longer.push_back(0);
  CHECK_ERROR_KIND(decode(longer, "t"), ErrorKind::integrity);
  Tree wrong;
  wrong.entries.push_back(file("a", 10));
  wrong.entries[0].size = 11;
  CHECK_ERROR_KIND(decode(encode(wrong), "t"), ErrorKind::integrity);
  Tree dup;
  dup.entries = {file("a", 0), file("a", 0)};
  CHECK_ERROR_KIND(encode(dup), ErrorKind::usage);
}

TEST_CASE("paths are split into validated components") {
  CHECK(split_path("/") == std::vector<std::string>{});
  CHECK(split_path("/etc//passwd") == std::vector<std::string>{"etc", "passwd"});
  CHECK(split_path("etc/./x") == std::vector<std::string>{"etc", "x"});
  CHECK_ERROR_KIND(split_path("/etc/../root"), ErrorKind::usage);
  CHECK_ERROR_KIND(split_path(".."), ErrorKind::usage);
  CHECK_ERROR_KIND(split_path(std::string_view("/a\0b", 4)), ErrorKind::usage);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("tree::entry_problem");

TEST_CASE("names what a tree entry cannot hold, and only that") {
  Entry e = file("f", 3);
  CHECK_FALSE(entry_problem(e));
  SUBCASE("4,096 xattrs encode and decode; 4,097 are a problem") {
    e.xattrs.clear();
    for (int i = 0; i < 4096; ++i) e.xattrs.push_back({"user.x" + std::to_string(100000 + i), "v"});
    CHECK_FALSE(entry_problem(e));
    Tree t;
    t.entries.push_back(e);
    CHECK(decode(encode(t), "t").entries.at(0).xattrs.size() == 4096);
    e.xattrs.push_back({"user.y", "v"});
    auto problem = entry_problem(e);
    REQUIRE(problem);
    CHECK(*problem == "4097 xattrs, more than 4096");
    // What encode would write, decode refuses: the reason to leave the entry out.
    t.entries = {e};
    CHECK_THROWS_AS(decode(encode(t), "t"), Error);
  }
  SUBCASE("an xattr value over 64 KiB") {
    e.xattrs.push_back({"user.big", std::string(65537, 'v')});
    REQUIRE(entry_problem(e));
    CHECK(entry_problem(e)->find("user.big") != std::string::npos);
  }
  SUBCASE("an xattr name over 255 bytes") {
    e.xattrs.push_back({"user." + std::string(251, 'n'), "v"});
    CHECK(entry_problem(e));
  }
  SUBCASE("a symlink target over 4,095 bytes") {
    e = Entry{};
    e.name = "l";
    e.kind = Kind::symlink;
    e.target = std::string(4096, 't');
    CHECK(entry_problem(e));
    e.target.pop_back();
    CHECK_FALSE(entry_problem(e));
  }
}

TEST_SUITE_END();

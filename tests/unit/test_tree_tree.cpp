#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

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

TEST_SUITE_BEGIN("tree::split");

namespace {
Tree big_dir(size_t n, size_t name_len = 40) {
  Tree t;
  for (size_t i = 0; i < n; ++i) {
    std::string name = "f" + std::to_string(i);
    name.resize(std::max(name.size(), name_len), '.');
    t.entries.push_back(file(std::move(name), i % 7));
  }
  return t;
}

struct Store {
  std::map<util::Digest, std::vector<uint8_t>> objects;
  void put(const DirObjects& d) {
    for (const auto& p : d.pieces) objects[p.id] = p.data;
    objects[d.top.id] = d.top.data;
  }
  Fetch fetch() {
    return [this](const util::Digest& id) {
      auto it = objects.find(id);
      if (it == objects.end()) throw Error(ErrorKind::not_found, "object " + id.hex());
      return it->second;
    };
  }
};
}  // namespace

TEST_CASE("a small directory stays one MTR1 object") {
  auto t = big_dir(100);
  auto d = encode_dir(t);
  CHECK(d.pieces.empty());
  CHECK(d.top.data == encode(t));
  CHECK(d.top.id == util::sha256(d.top.data));
  CHECK_FALSE(is_index(d.top.data));
}

TEST_CASE("a large directory splits into pieces that join back to the same tree") {
  auto t = big_dir(30000);
  auto d = encode_dir(t);
  REQUIRE(d.pieces.size() >= 4);
  REQUIRE(is_index(d.top.data));
  CHECK(d.top.id == util::sha256(d.top.data));
  auto index = decode_index(d.top.data, "index");
  REQUIRE(index.size() == d.pieces.size());
  uint64_t total = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    CHECK(index[i].id == d.pieces[i].id);
    CHECK(index[i].id == util::sha256(d.pieces[i].data));
    CHECK(index[i].entries >= 1);
    total += index[i].entries;
  }
  CHECK(total == 30000);
  Store store;
  store.put(d);
  std::vector<util::Digest> pieces;
  Tree back = load(d.top.id, store.fetch(), "dir", &pieces);
  Tree sorted = decode(encode(t), "whole");
  CHECK(back.entries == sorted.entries);
  CHECK(pieces.size() == d.pieces.size());
  // Canonical: the same directory in another order encodes to the same objects.
  std::reverse(t.entries.begin(), t.entries.end());
  CHECK(encode_dir(t).top.id == d.top.id);
}

TEST_CASE("over 16 MiB of entries splits even with few entries") {
  // 3,000 entries of ~6 KiB each (long symlink targets): 18 MiB, under 8,192 entries.
  Tree t;
  for (int i = 0; i < 3000; ++i) {
    Entry e;
    e.name = "l" + std::to_string(i);
    e.kind = Kind::symlink;
    e.target = std::string(4000, 't');
    e.xattrs = {{"user.pad", std::string(2000, 'p')}};
    t.entries.push_back(e);
  }
  auto d = encode_dir(t);
  REQUIRE(is_index(d.top.data));
  for (const auto& p : d.pieces) CHECK(p.data.size() <= k_piece_max_bytes + (8u << 10));
}

TEST_CASE("editing one entry of a split directory changes one piece and the index") {
  auto t = big_dir(50000);
  auto before = encode_dir(t);
  std::set<util::Digest> old_ids;
  for (const auto& p : before.pieces) old_ids.insert(p.id);
  auto count_new = [&](const DirObjects& d) {
    size_t n = 0;
    for (const auto& p : d.pieces) n += !old_ids.count(p.id);
    return n;
  };
  SUBCASE("one file changes") {
    t.entries[31337].size = 123456;
    t.entries[31337].chunks = {{util::sha256(std::string_view("y")), 123456}};
    auto after = encode_dir(t);
    CHECK(after.top.id != before.top.id);
    CHECK(count_new(after) == 1);
  }
  SUBCASE("one file is added") {
    t.entries.push_back(file("f31337.zzz", 1));
    CHECK(count_new(encode_dir(t)) <= 2);
  }
  SUBCASE("one file is removed") {
    t.entries.erase(t.entries.begin() + 20000);
    CHECK(count_new(encode_dir(t)) <= 2);
  }
}

TEST_CASE("a damaged or lying index is refused as integrity") {
  auto t = big_dir(20000);
  auto d = encode_dir(t);
  REQUIRE(d.pieces.size() >= 3);
  Store store;
  store.put(d);
  SUBCASE("a missing piece is the fetch's error") {
    store.objects.erase(d.pieces[1].id);
    CHECK_ERROR_KIND(load(d.top.id, store.fetch(), "dir"), ErrorKind::not_found);
  }
  SUBCASE("pieces swapped in the index") {
    auto index = decode_index(d.top.data, "index");
    std::vector<Tree> pieces;
    for (const auto& p : index) pieces.push_back(decode(store.objects.at(p.id), "piece"));
    std::swap(pieces[0], pieces[1]);
    CHECK_ERROR_KIND(join(index, pieces, "dir"), ErrorKind::integrity);
    std::swap(pieces[0], pieces[1]);
    pieces.pop_back();
    CHECK_ERROR_KIND(join(index, pieces, "dir"), ErrorKind::integrity);
  }
  SUBCASE("a piece holding names past the next piece's first") {
    auto index = decode_index(d.top.data, "index");
    std::vector<Tree> pieces;
    for (const auto& p : index) pieces.push_back(decode(store.objects.at(p.id), "piece"));
    auto stolen = pieces[1].entries.front();
    pieces[0].entries.push_back(stolen);
    index[0].entries++;
    CHECK_ERROR_KIND(join(index, pieces, "dir"), ErrorKind::integrity);
  }
  SUBCASE("malformed index bytes") {
    auto bytes = d.top.data;
    CHECK_ERROR_KIND(decode_index(std::span(bytes).first(bytes.size() - 1), "index"), ErrorKind::integrity);
    bytes.push_back(0);
    CHECK_ERROR_KIND(decode_index(bytes, "index"), ErrorKind::integrity);
    // An index of one piece is not canonical (the piece alone is the directory).
    util::ByteWriter w;
    w.raw(std::string_view("MTX1"));
    w.varint(1);
    w.raw(d.pieces[0].id.bytes);
    w.varint(5);
    w.str("a");
    CHECK_ERROR_KIND(decode_index(w.take(), "index"), ErrorKind::integrity);
    // An unsafe first name.
    util::ByteWriter u;
    u.raw(std::string_view("MTX1"));
    u.varint(2);
    u.raw(d.pieces[0].id.bytes);
    u.varint(5);
    u.str("..");
    u.raw(d.pieces[1].id.bytes);
    u.varint(5);
    u.str("b");
    CHECK_ERROR_KIND(decode_index(u.take(), "index"), ErrorKind::integrity);
  }
  SUBCASE("an index naming one piece a million times costs two reads, not a million") {
    util::ByteWriter w;
    w.raw(std::string_view("MTX1"));
    w.varint(1000000);
    auto first = decode_index(d.top.data, "index").front();
    for (int i = 0; i < 1000000; ++i) {
      w.raw(first.id.bytes);
      w.varint(first.entries);
      w.str(i == 0 ? first.first : first.first + "~" + std::to_string(1000000 + i));
    }
    auto lying = w.take();
    util::Digest lying_id = util::sha256(lying);
    store.objects[lying_id] = lying;
    size_t reads = 0;
    auto inner = store.fetch();
    Fetch counting = [&](const util::Digest& id) {
      ++reads;
      return inner(id);
    };
    CHECK_ERROR_KIND(load(lying_id, counting, "dir"), ErrorKind::integrity);
    CHECK(reads <= 3);
  }
  SUBCASE("an index where a tree is expected is refused by decode") {
    CHECK_ERROR_KIND(decode(d.top.data, "dir"), ErrorKind::integrity);
  }
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("tree::for_each_piece");

TEST_CASE("a walk holds one piece at a time, and a bound refuses a larger object") {
  // 70,000 entries whose names never hash to a cut and are tiny (no byte cut): the
  // forced cut at k_piece_max_entries still splits them.
  Tree t;
  for (int i = 0; t.entries.size() < 70000; ++i) {
    Entry e;
    e.name = "n" + std::to_string(i);
    if (util::xxh3(e.name) % k_piece_target == 0) continue;
    e.kind = Kind::fifo;
    t.entries.push_back(e);
  }
  auto d = encode_dir(t);
  REQUIRE(d.pieces.size() == 2);
  Store store;
  store.put(d);
  size_t biggest = 0, total = 0, calls = 0;
  for_each_piece(d.top.id, store.fetch(), "dir", [&](const util::Digest& object, const Tree& piece) {
    CHECK(object != d.top.id);
    biggest = std::max(biggest, piece.entries.size());
    total += piece.entries.size();
    calls++;
  }, k_piece_max_entries);
  CHECK(calls == 2);
  CHECK(biggest == k_piece_max_entries);
  CHECK(total == 70000);
  // The same entries as one MTR1 object: refused under the bound, walked without it.
  auto whole = encode(t);
  util::Digest whole_id = util::sha256(whole);
  store.objects[whole_id] = whole;
  auto walk = [&](size_t bound) {
    for_each_piece(whole_id, store.fetch(), "dir", [](const util::Digest&, const Tree&) {}, bound);
  };
  CHECK_ERROR_KIND(walk(k_piece_max_entries), ErrorKind::integrity);
  CHECK_NOTHROW(walk(0));
}

TEST_SUITE_END();

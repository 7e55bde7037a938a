#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "libmirage/browse/browse.hpp"
#include "libmirage/store/record.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/memory_source.hpp"

using namespace mirage;
using tree::Entry;
using tree::Kind;
using mirage::testing::MemorySource;

namespace {

Entry symlink_entry(const std::string& name, const std::string& target) {
  Entry e;
  e.name = name;
  e.kind = Kind::symlink;
  e.mode = 0777;
  e.target = target;
  return e;
}

std::vector<std::string> paths(MemorySource& src, const Entry& root, const std::string& path, bool recursive) {
  std::vector<std::string> out;
  browse::list(src, root, path, recursive, [&](const browse::Item& i) { out.push_back(i.path); });
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("browse");

TEST_CASE("list gives a directory's entries, everything below with recursive, or the entry itself") {
  MemorySource src;
  auto root = src.dir("", {src.dir("etc", {src.file("hosts", "127.0.0.1"), symlink_entry("mtab", "/proc/mounts")}),
                           src.file("top", "t")});
  CHECK(paths(src, root, "/", false) == std::vector<std::string>{"/etc", "/top"});
  CHECK(paths(src, root, "/", true) == std::vector<std::string>{"/etc", "/etc/hosts", "/etc/mtab", "/top"});
  CHECK(paths(src, root, "etc//hosts", false) == std::vector<std::string>{"/etc/hosts"});
  CHECK(paths(src, root, "/etc/mtab", false) == std::vector<std::string>{"/etc/mtab"});
  CHECK_ERROR_KIND(paths(src, root, "/etc/mtab/x", false), ErrorKind::not_found);
  CHECK_ERROR_KIND(paths(src, root, "/etc/nope", false), ErrorKind::not_found);
  CHECK_ERROR_KIND(paths(src, root, "/etc/../top", false), ErrorKind::usage);
}

TEST_CASE("append_json_line writes what json(item).dump() writes, for every kind and odd names") {
  std::vector<Entry> entries;
  for (auto [name, kind] : std::vector<std::pair<std::string, Kind>>{
           {"plain.txt", Kind::file}, {"dir", Kind::dir}, {"with \"quote\" and \\", Kind::file},
           {"new\nline\ttab\x7f", Kind::fifo}, {"caf\xc3\xa9 \xe2\x82\xac", Kind::socket},
           {"bad\xff\xfe utf8", Kind::file}, {"tty0", Kind::chardev}, {"sda", Kind::blockdev}}) {
    Entry e;
    e.name = name;
    e.kind = kind;
    e.mode = 04755;
    e.uid = 1000;
    e.gid = 4294967295u;
    e.size = 18446744073709551615ull;
    e.mtime_ns = -1234567890123;
    e.rdev = 0x0801;
    entries.push_back(e);
  }
  entries.push_back(symlink_entry("link", "../target \x01\xc0"));
  entries.back().link_group = "g1";
  entries.back().xattrs = {{"user.a", "x"}, {"user.\"odd\"\n", ""}, {"security.selinux", ""}};
  for (const auto& e : entries) {
    for (const std::string& path : {std::string("/"), "/etc/" + e.name}) {
      browse::Item item{path, e};
      std::string fast;
      browse::append_json_line(fast, item);
      CAPTURE(path);
      CHECK(fast == nlohmann::json(item).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    }
  }
}

TEST_CASE("list reads a split directory of 10,000 entries whole") {
  MemorySource src;
  std::vector<Entry> many;
  for (int i = 0; i < 10000; ++i) many.push_back(src.file("f" + std::to_string(i), ""));
  auto root = src.dir("", {src.dir("big", many)});
  CHECK(paths(src, root, "/big", false).size() == 10000);
}

TEST_CASE("diff reads only the subtrees whose ids differ") {
  MemorySource src;
  std::vector<Entry> same;
  for (int i = 0; i < 50; ++i) same.push_back(src.dir("d" + std::to_string(i), {src.file("x", "x" + std::to_string(i))}));
  auto shared = src.dir("shared", same);
  auto a = src.dir("", {shared, src.dir("etc", {src.file("hosts", "old"), src.file("gone", "g")}), src.file("f", "1")});
  Entry hosts = src.file("hosts", "new!");
  Entry f = src.file("f", "1");
  f.mode = 0600;
  auto b = src.dir("", {shared, src.dir("etc", {hosts, src.dir("new", {src.file("n", "nn")})}), f});
  src.asked = 0;
  auto r = browse::diff(src, a, b, "/");
  std::vector<std::pair<std::string, browse::Change>> got;
  for (const auto& c : r.changes) got.push_back({c.path, c.change});
  using enum browse::Change;
  CHECK(got == std::vector<std::pair<std::string, browse::Change>>{
                   {"/etc/gone", removed}, {"/etc/hosts", modified}, {"/etc/new", added}, {"/etc/new/n", added},
                   {"/f", metadata}});
  CHECK(r.summary.added_bytes == 2);
  CHECK(r.summary.modified_bytes_before == 3);
  CHECK(r.summary.modified_bytes_after == 4);
  // Both roots, both /etc, /etc/new: never the 51 trees of /shared.
  CHECK(r.summary.trees_read == 5);
  CHECK(src.asked == 5);
  CHECK(browse::diff(src, a, a, "/").changes.empty());
  CHECK_ERROR_KIND(browse::diff(src, a, b, "/nowhere"), ErrorKind::not_found);
}

TEST_CASE("find groups versions of a path with the snapshots that hold them, each tree read once") {
  MemorySource src;
  auto etc1 = src.dir("etc", {src.file("hosts", "v1", 100)});
  auto etc2 = src.dir("etc", {src.file("hosts", "v2", 200)});
  std::vector<browse::SnapshotRef> snaps = {{"s1", 1, src.dir("", {etc1})}, {"s2", 2, src.dir("", {etc1})},
                                            {"s3", 3, src.dir("", {etc2})}};
  src.asked = 0;
  auto found = browse::find(src, snaps, {{"hosts"}, {}, {}});
  REQUIRE(found.size() == 2);
  CHECK(found[0].snapshots == std::vector<std::string>{"s1", "s2"});
  CHECK(found[1].snapshots == std::vector<std::string>{"s3"});
  CHECK(found[1].entry.size == 2);
  // s1 and s2 have the same root: two distinct roots and two /etc trees, four reads.
  CHECK(src.asked == 4);
  CHECK(browse::find(src, snaps, {{"/etc/h*"}, {}, {}}).size() == 2);
  CHECK(browse::find(src, snaps, {{"/h*"}, {}, {}}).empty());
  CHECK(browse::find(src, snaps, {{"hosts"}, 150, {}}).size() == 1);
  CHECK(browse::find(src, snaps, {{"hosts"}, {}, 150}).front().snapshots.size() == 2);
  CHECK_ERROR_KIND(browse::find(src, snaps, {{""}, {}, {}}), ErrorKind::usage);
}

TEST_CASE("dump_file writes a file's verified bytes and refuses a directory") {
  MemorySource src;
  auto f = src.file("f", std::string(100000, 'z'));
  auto root = src.dir("", {f});
  // A temporary file, not a pipe: nothing reads while dump_file writes.
  FILE* tmp = std::tmpfile();
  REQUIRE(tmp);
  auto stats = browse::dump_file(src, f, "/f", ::fileno(tmp));
  std::string got(100001, '\0');
  got.resize(static_cast<size_t>(std::max<ssize_t>(0, ::pread(::fileno(tmp), got.data(), got.size(), 0))));
  std::fclose(tmp);
  CHECK(stats.bytes == 100000);
  CHECK(got == std::string(100000, 'z'));
  CHECK_ERROR_KIND(browse::dump_file(src, root, "/", 1), ErrorKind::usage);
}

TEST_SUITE_END();

#include <doctest/doctest.h>

#include <filesystem>

#include "libmirage/scan/files_cache.hpp"
#include "libmirage/util/bytes.hpp"
#include "libmirage/util/digest.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace mirage;
using namespace mirage::scan;

TEST_SUITE_BEGIN("scan::files_cache");

TEST_CASE("the files cache keeps each file's stamp, chunks and whether it had xattrs") {
  test::TempDir dir;
  FileStamp a{10, 1, 2, 3}, b{20, 4, 5, 6};
  tree::ChunkRef c{util::sha256("x"), 10};
  FilesCache cache;
  cache.add_directory("/etc", {{"a", a, {c}, true}, {"b", b, {c}, false}});
  cache.save(dir.path() / "fc");
  bool damaged = true;
  auto back = FilesCache::load(dir.path() / "fc", &damaged);
  CHECK_FALSE(damaged);
  const auto* files = back.directory("/etc");
  REQUIRE(files);
  const CachedFile* fa = FilesCache::lookup(files, "a", a);
  REQUIRE(fa);
  CHECK(fa->no_xattrs);
  CHECK(fa->chunks.size() == 1);
  const CachedFile* fb = FilesCache::lookup(files, "b", b);
  REQUIRE(fb);
  CHECK_FALSE(fb->no_xattrs);
  CHECK_FALSE(FilesCache::lookup(files, "a", b));  // another stamp: not vouched for
}

TEST_CASE("a files cache in the format before (MFC2, no flags) is read, its files' xattrs unknown") {
  test::TempDir dir;
  util::ByteWriter w;
  w.raw(std::string_view("MFC2"));
  w.varint(1);
  w.str("/etc");
  w.varint(1);
  w.str("a");
  w.varint(10);
  w.svarint(1);
  w.svarint(2);
  w.varint(3);
  w.varint(1);
  auto id = util::sha256("x");
  w.raw(id.bytes);
  w.varint(10);
  w.varint(0);  // no trees
  w.u64le(util::xxh3(w.data()));
  util::AtomicFile out(dir.path() / "fc");
  out.write(w.data());
  out.commit();
  bool damaged = true;
  auto cache = FilesCache::load(dir.path() / "fc", &damaged);
  CHECK_FALSE(damaged);
  const CachedFile* f = FilesCache::lookup(cache.directory("/etc"), "a", FileStamp{10, 1, 2, 3});
  REQUIRE(f);
  CHECK_FALSE(f->no_xattrs);
  CHECK(f->chunks.at(0).id == id);
}

TEST_SUITE_END();

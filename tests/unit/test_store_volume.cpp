// The storage volume conformance suite: one body, run against every implementation
// (a local directory and memory; an object store joins by adding its kind below).
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "libmirage/store/volume.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> bytes_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 131 % 251);
  return v;
}

std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t at, size_t n) {
  return {v.begin() + static_cast<ptrdiff_t>(at), v.begin() + static_cast<ptrdiff_t>(at + n)};
}

/// A local directory volume in a fresh temporary directory, given as file:///DIR.
struct FileKind {
  static constexpr bool on_disk = true;
  fs::path dir;
  FileKind() {
    char tmpl[] = "/tmp/mirage-volume-XXXXXX";
    dir = ::mkdtemp(tmpl);
    dir /= "vol";
  }
  ~FileKind() { fs::remove_all(dir.parent_path()); }
  std::string url() const { return "file://" + dir.string(); }
};

/// An in-memory volume of a name no other test uses, forgotten afterwards.
struct MemoryKind {
  static constexpr bool on_disk = false;
  std::string name = "conformance-" + util::random_hex(8);
  ~MemoryKind() { store::drop_memory_volume(name); }
  std::string url() const { return "mem://" + name; }
};

}  // namespace

TYPE_TO_STRING_AS("file", FileKind);
TYPE_TO_STRING_AS("mem", MemoryKind);

namespace {

std::set<std::string> names_in(store::Volume& vol) {
  std::set<std::string> out;
  for (const auto& p : vol.list()) {
    CHECK(p.location == vol.location(p.name));
    out.insert(p.name);
  }
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("store::Volume");

TEST_CASE_TEMPLATE("volume conformance", Kind, FileKind, MemoryKind) {
  Kind kind;
  auto vol = store::open_volume(kind.url());
  CHECK(vol->url() == kind.url());
  CHECK(vol->list().empty());  // before init: nothing, and no error
  vol->init();
  vol->init();  // idempotent
  CHECK(vol->list().empty());
  CHECK(vol->usage().free_bytes > 0);

  auto head = bytes_of(8, 1), body = bytes_of(100000, 7);
  auto w = vol->create_pack();
  REQUIRE(w->name().size() == 32);
  CHECK(w->name().find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(w->size() == 0);
  CHECK(w->append(head) == 0);
  CHECK(w->append(body) == 8);
  CHECK(w->size() == 8 + body.size());
  CHECK(w->durable() == 8 + body.size());
  CHECK(w->durable() == 8 + body.size());  // nothing new: the same length

  SUBCASE("ranged reads, and reads past the end fail as a truncated pack") {
    CHECK(vol->read(w->name(), 8, body.size()) == body);
    CHECK(vol->read(w->name(), 0, 8) == head);
    CHECK(vol->read(w->name(), 508, 1000) == slice(body, 500, 1000));
    CHECK(vol->read(w->name(), 8 + body.size(), 0).empty());
    CHECK_ERROR_KIND(vol->read(w->name(), body.size(), 100), ErrorKind::integrity);
    CHECK_ERROR_KIND(vol->read(w->name(), 1u << 30, 1), ErrorKind::integrity);
    auto r = vol->open_pack(w->name());
    CHECK(r->name() == w->name());
    CHECK(r->size() == 8 + body.size());
    std::vector<uint8_t> out(100);
    CHECK(r->read_some(body.size() - 2, out) == 10);  // 10 bytes left from there
    CHECK(r->read_some(1u << 30, out) == 0);
    r->will_need(0, 1000);  // a hint: no effect on what is read
    r->read(8, std::span(out).first(50));
    CHECK(std::vector<uint8_t>(out.begin(), out.begin() + 50) == slice(body, 0, 50));
  }

  SUBCASE("a missing pack is not_found, to open, read or remove") {
    std::string other = util::random_hex(16);
    CHECK_ERROR_KIND(vol->open_pack(other), ErrorKind::not_found);
    CHECK_ERROR_KIND(vol->read(other, 0, 8), ErrorKind::not_found);
    CHECK_FALSE(vol->remove(other));
  }

  SUBCASE("seal ends the pack; what it holds stays readable") {
    w->seal();
    w->seal();  // again: nothing
    CHECK_ERROR_KIND(w->append(head), ErrorKind::precondition);
    CHECK(w->durable() == 8 + body.size());
    CHECK(vol->read(w->name(), 8, body.size()) == body);
  }

  SUBCASE("abandon drops what was appended since the last durable() and ends the pack") {
    CHECK(w->append(bytes_of(5000, 3)) == 8 + body.size());
    w->abandon();
    w->abandon();  // again: nothing
    CHECK(w->size() == 8 + body.size());
    CHECK(w->durable() == 8 + body.size());
    CHECK_ERROR_KIND(w->append(head), ErrorKind::precondition);
    auto r = vol->open_pack(w->name());
    CHECK(r->size() == 8 + body.size());  // the failed tail is gone from the volume too
    CHECK(vol->read(w->name(), 8, body.size()) == body);
  }

  SUBCASE("two writers at once write two packs") {
    auto w2 = vol->create_pack();
    CHECK(w2->name() != w->name());
    auto a = bytes_of(3000, 11), b = bytes_of(5000, 13);
    CHECK(w2->append(a) == 0);
    CHECK(w->append(b) == 8 + body.size());
    CHECK(w2->append(b) == a.size());
    w->durable();
    CHECK(w2->durable() == a.size() + b.size());
    CHECK(vol->read(w2->name(), 0, a.size()) == a);
    CHECK(vol->read(w2->name(), a.size(), b.size()) == b);
    CHECK(vol->read(w->name(), 8 + body.size(), b.size()) == b);
    CHECK(names_in(*vol) == std::set<std::string>{w->name(), w2->name()});
  }

  SUBCASE("a reader sees what the writer appends after it opened") {
    auto r = vol->open_pack(w->name());
    auto more = bytes_of(7000, 17);
    uint64_t at = w->append(more);
    CHECK(w->durable() == at + more.size());
    CHECK(r->size() == at + more.size());
    std::vector<uint8_t> out(more.size());
    r->read(at, out);
    CHECK(out == more);
  }

  SUBCASE("list and remove; a reader opened before the remove still reads") {
    auto w2 = vol->create_pack();
    w2->append(head);
    w2->seal();
    CHECK(names_in(*vol) == std::set<std::string>{w->name(), w2->name()});
    auto r = vol->open_pack(w->name());
    CHECK(vol->remove(w->name()));
    CHECK_FALSE(vol->remove(w->name()));
    CHECK(names_in(*vol) == std::set<std::string>{w2->name()});
    CHECK_ERROR_KIND(vol->open_pack(w->name()), ErrorKind::not_found);
    std::vector<uint8_t> out(body.size());
    r->read(8, out);
    CHECK(out == body);
  }

  SUBCASE("reopened from its URL, it holds the same packs") {
    std::string name = w->name();
    w->seal();
    w.reset();
    vol.reset();
    auto again = store::open_volume(kind.url());
    CHECK(names_in(*again) == std::set<std::string>{name});
    CHECK(again->read(name, 8, body.size()) == body);
  }

  SUBCASE("usage counts what the packs hold") {
    auto u = vol->usage();
    CHECK(u.free_bytes > 0);
    CHECK(u.used_bytes >= 8 + body.size());
  }

  if constexpr (Kind::on_disk) {
    SUBCASE("directory: modes 0700 and 0600, the pack named DIR/packs/ab/ab….pack") {
      fs::path file = kind.dir / "packs" / w->name().substr(0, 2) / (w->name() + ".pack");
      CHECK(vol->location(w->name()) == file.string());
      struct stat st {};
      REQUIRE(::stat(file.c_str(), &st) == 0);
      CHECK((st.st_mode & 0777) == 0600);
      CHECK(static_cast<uint64_t>(st.st_size) == 8 + body.size());
      REQUIRE(::stat((kind.dir / "packs").c_str(), &st) == 0);
      CHECK((st.st_mode & 0777) == 0700);
      REQUIRE(::stat(file.parent_path().c_str(), &st) == 0);
      CHECK((st.st_mode & 0777) == 0700);
    }
    SUBCASE("directory: a truncated pack reads as integrity past its new end") {
      w->seal();
      fs::resize_file(vol->location(w->name()), 500);
      CHECK(vol->read(w->name(), 8, 400) == slice(body, 0, 400));
      CHECK_ERROR_KIND(vol->read(w->name(), 8, body.size()), ErrorKind::integrity);
      CHECK(vol->open_pack(w->name())->size() == 500);
    }
    SUBCASE("directory: a file misplaced or misnamed is listed where it is") {
      fs::create_directories(kind.dir / "packs" / "zz");
      fs::copy_file(vol->location(w->name()), kind.dir / "packs" / "zz" / (w->name() + ".pack"));
      auto list = vol->list();
      REQUIRE(list.size() == 2);
      int misplaced = 0;
      for (const auto& p : list) misplaced += p.location != vol->location(p.name);
      CHECK(misplaced == 1);
    }
  }
}

TEST_CASE("volume URLs: file:// and absolute paths are directories, mem:// is memory, anything else is usage") {
  CHECK(store::open_volume("/srv/vol1")->location("ab12") == "/srv/vol1/packs/ab/ab12.pack");
  CHECK(store::open_volume("file:///srv/vol1")->location("ab12") == "/srv/vol1/packs/ab/ab12.pack");
  CHECK(store::open_volume("file:///srv/vol1")->url() == "file:///srv/vol1");
  CHECK(store::open_volume("mem://unit-urls")->location("ab12") == "mem://unit-urls/ab12.pack");
  store::drop_memory_volume("unit-urls");
  CHECK_ERROR_KIND(store::open_volume("relative/dir"), ErrorKind::usage);
  CHECK_ERROR_KIND(store::open_volume(""), ErrorKind::usage);
  CHECK_ERROR_KIND(store::open_volume("file://relative"), ErrorKind::usage);
  CHECK_ERROR_KIND(store::open_volume("file://host/srv"), ErrorKind::usage);
  CHECK_ERROR_KIND(store::open_volume("s3://bucket/prefix"), ErrorKind::usage);
  CHECK_ERROR_KIND(store::open_volume("mem://"), ErrorKind::usage);
  CHECK_ERROR_KIND(store::open_volume("/srv/vol1")->open_pack("../x"), ErrorKind::usage);
  try {
    store::open_volume("s3://bucket/prefix");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("s3://bucket/prefix") != std::string::npos);  // names it
  }
}

TEST_CASE("memory: two volumes of one name share packs; a crash keeps only what was made durable") {
  std::string name = "unit-crash-" + util::random_hex(8);
  auto a = store::open_volume("mem://" + name), b = store::open_volume("mem://" + name);
  auto w = a->create_pack();
  auto kept = bytes_of(1000, 3), lost = bytes_of(500, 5);
  w->append(kept);
  CHECK(w->durable() == kept.size());
  w->append(lost);
  CHECK(b->read(w->name(), 0, kept.size() + lost.size()).size() == kept.size() + lost.size());
  store::crash_memory_volume(name);
  CHECK(b->open_pack(w->name())->size() == kept.size());
  CHECK(b->read(w->name(), 0, kept.size()) == kept);
  CHECK_ERROR_KIND(b->read(w->name(), 0, kept.size() + 1), ErrorKind::integrity);
  store::drop_memory_volume(name);
  CHECK(store::open_volume("mem://" + name)->list().empty());
}

TEST_CASE("memory: usage reports the capacity left, and a full volume refuses appends") {
  std::string name = "unit-capacity-" + util::random_hex(8);
  store::set_memory_volume_capacity(name, 10000);
  auto vol = store::open_volume("mem://" + name);
  CHECK(vol->usage().free_bytes == 10000);
  auto w = vol->create_pack();
  w->append(bytes_of(4000, 1));
  CHECK(vol->usage().used_bytes == 4000);
  CHECK(vol->usage().free_bytes == 6000);
  CHECK_ERROR_KIND(w->append(bytes_of(7000, 1)), ErrorKind::failed);
  CHECK(w->size() == 4000);
  store::drop_memory_volume(name);
}

TEST_SUITE_END();

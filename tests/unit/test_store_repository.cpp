#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "libmirage/store/repository.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/sqlite.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {
using test::TempDir;

std::vector<uint8_t> upload_of(const std::vector<std::string>& objects) {
  std::vector<uint8_t> blob;
  for (const auto& o : objects) {
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(o.data()), o.size());
    store::append_plain(blob, util::sha256(o), bytes, 3);
  }
  return blob;
}

fs::path only_pack(const fs::path& data) {
  for (auto& e : fs::recursive_directory_iterator(data / "volumes"))
    if (e.path().extension() == ".pack") return e.path();
  return {};
}

/// Where a test's repository keeps volume 0: DATA/volumes/0 ...
struct OnDisk {
  std::string url() const { return {}; }
};
/// ... or memory (store/volume.hpp), which proves the repository reaches packs only
/// through the volume interface.
struct InMemory {
  std::string name = "repo-" + util::random_hex(8);
  ~InMemory() { store::drop_memory_volume(name); }
  std::string url() const { return "mem://" + name; }
};
}  // namespace

TYPE_TO_STRING_AS("file", OnDisk);
TYPE_TO_STRING_AS("mem", InMemory);

TEST_SUITE_BEGIN("store::Repository");

TEST_CASE_TEMPLATE("chunks round-trip, compressed when it pays, and dedupe", Vol, OnDisk, InMemory) {
  TempDir dir;
  Vol vol;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  std::string text(100000, 'a');
  std::string noise;
  for (int i = 0; i < 5000; ++i) noise += static_cast<char>((i * 7919) % 251);
  auto records = store::verify_upload(upload_of({text, noise, text}));
  auto stats = repo.put(records);
  CHECK(stats.chunks == 3);
  CHECK(stats.new_chunks == 2);
  CHECK(stats.stored_bytes < text.size());
  auto plain = repo.read_plain(util::sha256(text));
  CHECK(std::string(plain.begin(), plain.end()) == text);
  auto missing = repo.missing(std::vector<util::Digest>{util::sha256(text), util::sha256(std::string_view("other"))});
  CHECK(missing == std::vector<bool>{false, true});
  CHECK(repo.put(store::verify_upload(upload_of({text}))).new_chunks == 0);
  CHECK(fs::exists(dir.path() / "volumes") == vol.url().empty());  // in memory: no pack file
}

TEST_CASE("a forged chunk id is refused") {
  std::vector<uint8_t> blob;
  std::string data = "real data";
  store::append_plain(blob, util::sha256(std::string_view("something else")),
                      std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 3);
  CHECK_ERROR_KIND(store::verify_upload(blob), ErrorKind::integrity);
}

TEST_CASE("the owner's upload is checked for framing, and a chunk it got wrong is caught when read") {
  TempDir dir;
  store::Repository repo(dir.path(), true);
  std::string text(20000, 'q');
  auto bytes = std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  SUBCASE("a zstd frame that declares another size than its record is refused") {
    std::vector<uint8_t> blob;
    store::append_plain(blob, util::sha256(text), bytes, 3);
    REQUIRE(blob[32] == static_cast<uint8_t>(store::Codec::zstd));
    blob[33] ^= 1;  // the record's raw size, one off
    CHECK_ERROR_KIND(store::verify_upload(blob, store::UploadCheck::framing), ErrorKind::integrity);
    CHECK_ERROR_KIND(store::verify_upload(blob), ErrorKind::integrity);
  }
  SUBCASE("a damaged frame header is refused") {
    std::vector<uint8_t> blob;
    store::append_plain(blob, util::sha256(text), bytes, 3);
    blob[store::k_record_header] ^= 0xff;  // the zstd magic
    CHECK_ERROR_KIND(store::verify_upload(blob, store::UploadCheck::framing), ErrorKind::integrity);
  }
  SUBCASE("an id that does not match is stored, then refused by a read and found by check") {
    std::vector<uint8_t> blob;
    auto wrong = util::sha256(std::string_view("another chunk"));
    store::append_plain(blob, wrong, bytes, 3);
    CHECK_ERROR_KIND(store::verify_upload(blob), ErrorKind::integrity);
    repo.put(store::verify_upload(blob, store::UploadCheck::framing));
    CHECK_ERROR_KIND(repo.read_plain(wrong), ErrorKind::integrity);
    CHECK(repo.check(false, nullptr).problems.empty());  // the structure is sound
    CHECK(repo.check(true, nullptr).problems.size() == 1);  // --read-data decodes it
  }
}

TEST_CASE("a truncated upload is refused") {
  auto blob = upload_of({"hello world"});
  blob.pop_back();
  CHECK_ERROR_KIND(store::verify_upload(blob), ErrorKind::integrity);
}

TEST_CASE("check finds a flipped byte and a truncated pack") {
  TempDir dir;
  {
    store::Repository repo(dir.path(), true);
    repo.put(store::verify_upload(upload_of({std::string(50000, 'x'), std::string(60000, 'y')})));
    CHECK(repo.check(true, nullptr).problems.empty());
  }
  fs::path pack = only_pack(dir.path());
  REQUIRE(!pack.empty());
  SUBCASE("flipped byte") {
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(60);
    char c;
    f.seekg(60);
    f.get(c);
    f.seekp(60);
    f.put(static_cast<char>(c ^ 0x40));
    f.close();
    store::Repository repo(dir.path(), false);
    CHECK(repo.check(false, nullptr).problems.empty());  // metadata alone cannot see it
    auto report = repo.check(true, nullptr);
    REQUIRE(report.problems.size() == 1);
    CHECK(report.problems[0].what == "chunk");
  }
  SUBCASE("truncated pack") {
    fs::resize_file(pack, fs::file_size(pack) - 10);
    store::Repository repo(dir.path(), false);
    auto report = repo.check(false, nullptr);
    REQUIRE(!report.problems.empty());
    CHECK(report.problems[0].what == "pack");
    CHECK(report.problems[0].message.find("truncated") != std::string::npos);
  }
}

TEST_CASE("opening a missing data directory without create is not_found") {
  TempDir dir;
  try {
    store::Repository repo(dir.path() / "nope", false);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::not_found);
  }
}


namespace {

/// Stores a one-file tree whose file is `chunks` (with `xattrs`) and commits a snapshot
/// of it for device "d"; returns the snapshot id.
std::string snapshot_of(store::Repository& repo, const std::vector<std::string>& chunks, const std::string& id,
                        const std::vector<tree::Xattr>& xattrs = {}) {
  tree::Tree t;
  tree::Entry file;
  file.name = "f";
  file.mode = 0644;
  file.xattrs = xattrs;
  for (const auto& c : chunks) {
    file.chunks.push_back({util::sha256(c), static_cast<uint32_t>(c.size())});
    file.size += c.size();
  }
  t.entries.push_back(file);
  auto encoded = tree::encode(t);
  std::string tree_bytes(encoded.begin(), encoded.end());
  repo.put(store::verify_upload(upload_of({tree_bytes})));
  if (!repo.catalog().device("d")) {
    catalog::Device d;
    d.id = "d";
    repo.catalog().add_device(d);
  }
  catalog::Snapshot s;
  s.id = id;
  s.device = "d";
  s.tree = util::sha256(tree_bytes);
  tree::Entry root;
  root.kind = tree::Kind::dir;
  root.mode = 0755;
  root.subtree = s.tree;
  s.root = tree::encode_entry(root);
  s.created_at = static_cast<int64_t>(repo.catalog().all_snapshots().size()) + 1;
  repo.catalog().add_snapshot(s);
  return id;
}

std::string blob(char c, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += static_cast<char>(c + (i * 131) % 97);  // poorly compressible
  return s;
}

/// Incompressible bytes, the same for the same seed.
std::string noise(size_t n, unsigned seed) {
  std::mt19937 rnd(seed);
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rnd());
  return s;
}

}  // namespace

TEST_CASE("check notes a file stored while it was a streaming restore's placeholder, and still passes") {
  TempDir dir;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse);
  std::string zeros(5000, '\0'), real = blob('r', 5000);
  repo.put(store::verify_upload(upload_of({zeros, real})));
  snapshot_of(repo, {real}, "s-good");
  snapshot_of(repo, {zeros}, "s-old", {{tree::k_placeholder_xattr, "1"}});
  auto r = repo.check(false, nullptr);
  CHECK(r.problems.empty());
  REQUIRE(r.notes.size() == 1);
  CHECK(r.notes[0].what == "snapshot");
  CHECK(r.notes[0].name == "s-old");
  CHECK(r.notes[0].message.find("file /f: stored while it was an unfilled placeholder") != std::string::npos);
}

TEST_CASE_TEMPLATE("put writes the new records of an upload around the ones already stored", Vol, OnDisk, InMemory) {
  TempDir dir;
  Vol vol;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  std::string a(70000, 'a'), b = blob('b', 3000), c(5000, 'c'), d = blob('d', 40000);
  repo.put(store::verify_upload(upload_of({b})));
  // a | b (stored) | c | a (again) | d: three runs of new records, each at its own offset.
  auto stats = repo.put(store::verify_upload(upload_of({a, b, c, a, d})));
  CHECK(stats.new_chunks == 3);
  for (const auto& s : {a, b, c, d}) {
    auto plain = repo.read_plain(util::sha256(s));
    CHECK(std::string(plain.begin(), plain.end()) == s);
  }
  CHECK(repo.check(true, nullptr).problems.empty());
}

TEST_CASE("a put the volume refuses midway (full) leaves the writer where it was: later puts are indexed right") {
  TempDir dir;
  InMemory vol;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  std::string a(70000, 'a'), b = blob('b', 3000), c = noise(30000, 3), d = noise(40000, 1), e = noise(20000, 2);
  repo.put(store::verify_upload(upload_of({b})));
  // Room for the runs a and c, not for d: the third append fails with two placed.
  uint64_t used = store::open_volume(vol.url())->usage().used_bytes;
  store::set_memory_volume_capacity(vol.name, used + 35000);
  CHECK_ERROR_KIND(repo.put(store::verify_upload(upload_of({a, b, c, a, d}))), ErrorKind::failed);
  // The placed runs were given back (the pack ends at its durable length), nothing of
  // them is indexed, and what comes next lands where it is indexed.
  CHECK(store::open_volume(vol.url())->usage().used_bytes == used);
  CHECK_ERROR_KIND(repo.read_plain(util::sha256(a)), ErrorKind::not_found);
  store::set_memory_volume_capacity(vol.name, 100u << 20);
  repo.put(store::verify_upload(upload_of({e})));
  repo.put(store::verify_upload(upload_of({a, b, c, a, d})));
  for (const auto& x : {a, b, c, d, e}) {
    auto plain = repo.read_plain(util::sha256(x));
    CHECK(std::string(plain.begin(), plain.end()) == x);
  }
  CHECK(repo.check(true, nullptr).problems.empty());
}

TEST_CASE("a pack that cannot get its header on a full volume is removed again, and the put refused") {
  TempDir dir;
  InMemory vol;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  store::set_memory_volume_capacity(vol.name, 2);
  CHECK_ERROR_KIND(repo.put(store::verify_upload(upload_of({noise(1000, 4)}))), ErrorKind::failed);
  CHECK(store::open_volume(vol.url())->list().empty());
  CHECK(repo.catalog().packs().empty());
  store::set_memory_volume_capacity(vol.name, 100u << 20);
  repo.put(store::verify_upload(upload_of({noise(1000, 4)})));
  CHECK(repo.check(true, nullptr).problems.empty());
}

TEST_CASE("a pack the catalog cannot name (its disk full) is removed again, not left as an orphan") {
  TempDir dir;
  InMemory vol;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  {  // the catalog refuses a new pack row, as SQLite does on a full disk
    util::Db db((dir.path() / "catalog.db").string());
    db.exec("CREATE TRIGGER full BEFORE INSERT ON packs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;");
  }
  CHECK_ERROR_KIND(repo.put(store::verify_upload(upload_of({noise(1000, 5)}))), ErrorKind::failed);
  CHECK(store::open_volume(vol.url())->list().empty());
  {
    util::Db db((dir.path() / "catalog.db").string());
    db.exec("DROP TRIGGER full;");
  }
  repo.put(store::verify_upload(upload_of({noise(1000, 5)})));
  CHECK(store::open_volume(vol.url())->list().size() == 1);
  auto report = repo.check(true, nullptr);
  CHECK(report.problems.empty());
  CHECK(report.notes.empty());
}

TEST_CASE("a copied or moved data directory reads and writes its own volume 0, never the original's") {
  TempDir dir;
  fs::path a = dir.path() / "a", b = dir.path() / "b";
  std::string x = noise(5000, 6), y = noise(5000, 7);
  {
    store::Repository repo(a, true);
    repo.put(store::verify_upload(upload_of({x})));
    CHECK(repo.catalog().volumes().at(0).path == "volumes/0");  // named relative to the data directory
  }
  SUBCASE("made with volume 0 named relative") {
  }
  SUBCASE("made before, volume 0 named by the original's absolute path") {
    util::Db db((a / "catalog.db").string());
    db.exec("UPDATE volumes SET path = '" + (a / "volumes" / "0").string() + "'");
  }
  {  // the catalog alone copied: its volume 0 is missing, never the original's
    fs::create_directories(dir.path() / "c");
    fs::copy(a / "catalog.db", dir.path() / "c" / "catalog.db");
    store::Repository repo(dir.path() / "c", false);
    CHECK(repo.volumes().at(0).path == (dir.path() / "c" / "volumes" / "0").string());
    CHECK_ERROR_KIND(repo.read_plain(util::sha256(x)), ErrorKind::integrity);  // a pack gone
  }
  fs::copy(a, b, fs::copy_options::recursive);
  {
    store::Repository repo(b, false);
    CHECK(repo.volumes().at(0).path == (b / "volumes" / "0").string());
    repo.put(store::verify_upload(upload_of({y})));
    auto plain = repo.read_plain(util::sha256(x));
    CHECK(std::string(plain.begin(), plain.end()) == x);
  }
  auto packs = [](const fs::path& data) {
    size_t n = 0;
    for (auto& e : fs::recursive_directory_iterator(data / "volumes")) n += e.path().extension() == ".pack";
    return n;
  };
  CHECK(packs(a) == 1);  // the copy's new pack is in the copy
  CHECK(packs(b) == 2);
  fs::remove_all(a);  // the original gone (moved): the copy still reads all it holds
  store::Repository repo(b, false);
  for (const auto& o : {x, y}) {
    auto plain = repo.read_plain(util::sha256(o));
    CHECK(std::string(plain.begin(), plain.end()) == o);
  }
  CHECK(repo.check(true, nullptr).problems.empty());
}

TEST_CASE_TEMPLATE("gc deletes only what no snapshot reaches, pins uploads in flight, and repacks", Vol, OnDisk,
                   InMemory) {
  TempDir dir;
  Vol vol;
  std::string a = blob('a', 40000), b = blob('b', 40000), c = blob('c', 40000), d = blob('d', 40000);
  {
    store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
    repo.put(store::verify_upload(upload_of({a, b, c})));
    snapshot_of(repo, {a, b}, "s1");
    snapshot_of(repo, {b, c}, "s2");
  }  // the writer's pack is sealed as the process ends
  store::Repository repo(dir.path(), false);
  store::GcOptions o;
  o.grace_ns = 0;
  SUBCASE("nothing unreferenced: nothing goes") {
    auto r = store::collect_garbage(repo, o);
    CHECK(r.deleted == 0);
    CHECK(r.unreferenced == 0);
  }
  SUBCASE("a dropped snapshot's own chunk goes, shared ones stay, the pack is rewritten") {
    repo.catalog().delete_snapshot("s1");
    o.dry_run = true;
    auto dry = store::collect_garbage(repo, o);
    CHECK(dry.deleted == 2);  // chunk a and s1's tree
    CHECK(nlohmann::json(dry)["would_delete"] == 2);  // a dry run names what it would do
    CHECK_FALSE(nlohmann::json(dry).contains("deleted"));
    CHECK(repo.has(util::sha256(a)));
    o.dry_run = false;
    o.repack_below = 0.99;
    auto r = store::collect_garbage(repo, o);
    CHECK(r.deleted == 2);
    CHECK(r.repacked + r.retired >= 1);
    CHECK_FALSE(repo.has(util::sha256(a)));
    CHECK(repo.read_plain(util::sha256(b)) == std::vector<uint8_t>(b.begin(), b.end()));
    CHECK(repo.read_plain(util::sha256(c)) == std::vector<uint8_t>(c.begin(), c.end()));
    CHECK(repo.check(true, nullptr).problems.empty());
  }
  SUBCASE("an upload in flight is pinned until its commit") {
    repo.catalog().touch_upload("d");
    repo.put(store::verify_upload(upload_of({d})));
    auto r = store::collect_garbage(repo, o);
    CHECK(r.deleted == 0);
    CHECK(r.pinned == 1);
    CHECK(repo.has(util::sha256(d)));
    repo.catalog().end_upload("d");
    r = store::collect_garbage(repo, o);
    CHECK(r.deleted == 1);
    CHECK_FALSE(repo.has(util::sha256(d)));
  }
  SUBCASE("a snapshot committed while gc runs is marked before anything is deleted") {
    // Chunk a is reachable from nothing when the mark runs; between the mark and the
    // sweep another process commits s3, which reaches it again. Only the sweep's own
    // mark of roots committed since can keep a.
    repo.catalog().delete_snapshot("s1");
    repo.catalog().delete_snapshot("s2");
    int calls = 0;
    o.after_mark = [&] {
      ++calls;
      CHECK(repo.catalog().all_snapshots().empty());
      store::Repository other(dir.path(), false);
      snapshot_of(other, {a}, "s3");
    };
    auto r = store::collect_garbage(repo, o);
    CHECK(calls == 1);
    REQUIRE(repo.catalog().all_snapshots().size() == 1);
    CHECK(repo.has(util::sha256(a)));
    CHECK_FALSE(repo.has(util::sha256(b)));
    CHECK_FALSE(repo.has(util::sha256(c)));
    CHECK(r.roots == 1);  // s3's tree, marked by the sweep
    CHECK(repo.read_plain(util::sha256(a)) == std::vector<uint8_t>(a.begin(), a.end()));
    CHECK(repo.check(true, nullptr).problems.empty());
  }
}

TEST_CASE_TEMPLATE("a writer whose pack gc retired writes its records again elsewhere", Vol, OnDisk, InMemory) {
  TempDir dir;
  Vol vol;
  store::Repository writer(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  std::string a = blob('a', 30000), b = blob('b', 30000);
  writer.put(store::verify_upload(upload_of({a})));
  {
    // Another process's GC sees the pack idle (grace 0) with nothing live: retires it.
    store::Repository gc(dir.path(), false);
    store::GcOptions o;
    o.grace_ns = 0;
    auto r = store::collect_garbage(gc, o);
    CHECK(r.retired == 1);
  }
  auto stats = writer.put(store::verify_upload(upload_of({b})));
  CHECK(stats.new_chunks == 1);
  CHECK(writer.read_plain(util::sha256(b)) == std::vector<uint8_t>(b.begin(), b.end()));
  CHECK(writer.check(true, nullptr).problems.empty());
}

TEST_CASE_TEMPLATE("a pack id is never given twice: a writer whose pack gc deleted cannot write into another's", Vol,
                   OnDisk, InMemory) {
  TempDir dir;
  Vol vol;
  store::Repository writer(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  std::string a = blob('a', 30000), b = blob('b', 30000), c = blob('c', 30000);
  writer.put(store::verify_upload(upload_of({a})));
  int64_t first = writer.catalog().packs().back().id;
  {
    // Another process's GC retires the idle pack with nothing live and, past a zero
    // grace, deletes it at once; a third process then opens a pack of its own.
    store::Repository gc(dir.path(), false);
    store::GcOptions o;
    o.grace_ns = 0;
    auto r = store::collect_garbage(gc, o);
    CHECK(r.pack_files_deleted == 1);
    store::Repository other(dir.path(), false);
    other.put(store::verify_upload(upload_of({c})));
    CHECK(other.catalog().packs().back().id > first);
  }
  // The first writer appends to its (deleted) pack file: its records must not be
  // indexed under the third process's pack.
  auto stats = writer.put(store::verify_upload(upload_of({b})));
  CHECK(stats.new_chunks == 1);
  CHECK(writer.read_plain(util::sha256(b)) == std::vector<uint8_t>(b.begin(), b.end()));
  CHECK(writer.read_plain(util::sha256(c)) == std::vector<uint8_t>(c.begin(), c.end()));
  CHECK(writer.check(true, nullptr).problems.empty());
}

TEST_CASE("a schema 2 catalog is upgraded to 8: its packs keep their ids and new ones are never reused") {
  TempDir dir;
  std::string a = blob('a', 30000);
  {
    store::Repository repo(dir.path(), true);
    repo.put(store::verify_upload(upload_of({a})));
  }
  std::string db_path = (dir.path() / "catalog.db").string();
  {
    // What schema 2 had: a packs table without AUTOINCREMENT.
    util::Db db(db_path);
    db.exec("CREATE TABLE packs_v2(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, volume INTEGER NOT NULL, "
            "size INTEGER NOT NULL DEFAULT 0, sealed INTEGER NOT NULL DEFAULT 0, written_at INTEGER NOT NULL DEFAULT 0, "
            "retired_at INTEGER NOT NULL DEFAULT 0); INSERT INTO packs_v2 SELECT * FROM packs; DROP TABLE packs; "
            "ALTER TABLE packs_v2 RENAME TO packs; UPDATE meta SET value = '2' WHERE key = 'schema';");
  }
  store::Repository repo(dir.path(), false);
  CHECK(repo.read_plain(util::sha256(a)) == std::vector<uint8_t>(a.begin(), a.end()));
  int64_t old_id = repo.catalog().packs().back().id;
  repo.catalog().delete_pack(old_id);
  CHECK(repo.catalog().add_pack("0123456789abcdef", 1) > old_id);
  util::Db db(db_path);  // the SQLite backend's own record of its schema
  util::Stmt version(db, "SELECT value FROM meta WHERE key = 'schema'");
  REQUIRE(version.step());
  CHECK(version.text(0) == "8");
}

TEST_CASE("a schema 5 catalog is upgraded to 8: its snapshots record no layers (unknown), new ones do") {
  TempDir dir;
  std::string a = blob('a', 30000);
  std::string old_id;
  {
    store::Repository repo(dir.path(), true);
    old_id = snapshot_of(repo, {a}, "0000000000000001");
  }
  std::string db_path = (dir.path() / "catalog.db").string();
  {
    util::Db db(db_path);  // what schema 5 had: snapshots without the given column
    db.exec("ALTER TABLE snapshots DROP COLUMN given; UPDATE meta SET value = '5' WHERE key = 'schema';");
  }
  store::Repository repo(dir.path(), false);
  auto old = repo.catalog().snapshot(old_id);
  REQUIRE(old);
  CHECK(old->given == nlohmann::json::object());
  repo.catalog().set_given("d", {{"layers", {"base@1"}}});
  catalog::Snapshot s = *old;
  s.id = "0000000000000002";
  s.created_at += 1;
  s.given = repo.catalog().given("d");
  repo.catalog().add_snapshot(s);
  CHECK(repo.catalog().snapshot(s.id)->given["layers"] == nlohmann::json::array({"base@1"}));
  util::Db db(db_path);
  util::Stmt version(db, "SELECT value FROM meta WHERE key = 'schema'");
  REQUIRE(version.step());
  CHECK(version.text(0) == "8");
}

/// A new store at `dir` holding one accepted device (the catalog as the current schema makes it).
static void new_store_with_device(const fs::path& dir, const std::string& id) {
  store::Repository repo(dir, true);
  catalog::Device d;
  d.id = id;
  d.state = catalog::DeviceState::accepted;
  d.registered_at = d.last_seen = 1;
  repo.catalog().add_device(d);
}

TEST_CASE("a schema 6 catalog is upgraded to 8: its devices keep their rows and may be replaced") {
  TempDir dir;
  new_store_with_device(dir.path(), "pc-1");
  std::string db_path = (dir.path() / "catalog.db").string();
  {
    // What schema 6 had: devices without replaced_by, no reenrolments table.
    util::Db db(db_path);
    db.exec("DROP TABLE reenrolments; ALTER TABLE devices DROP COLUMN replaced_by; "
            "UPDATE meta SET value = '6' WHERE key = 'schema';");
  }
  store::Repository repo(dir.path(), false);
  auto& cat = repo.catalog();
  REQUIRE(cat.device("pc-1"));
  CHECK(cat.device("pc-1")->replaced_by.empty());
  cat.set_device_replaced("pc-1", "pc-2");
  CHECK(cat.device("pc-1")->state == catalog::DeviceState::replaced);
  CHECK(cat.reenrolments().empty());
  util::Db db(db_path);
  util::Stmt version(db, "SELECT value FROM meta WHERE key = 'schema'");
  REQUIRE(version.step());
  CHECK(version.text(0) == "8");
}

TEST_CASE("a schema 7 catalog is upgraded to 8: its devices get migration preflight reports") {
  TempDir dir;
  new_store_with_device(dir.path(), "pc-1");
  std::string db_path = (dir.path() / "catalog.db").string();
  {
    util::Db db(db_path);  // what schema 7 had: no migration_checks table
    db.exec("DROP TABLE migration_checks; UPDATE meta SET value = '7' WHERE key = 'schema';");
  }
  store::Repository repo(dir.path(), false);
  auto& cat = repo.catalog();
  REQUIRE(cat.device("pc-1"));
  CHECK_FALSE(cat.migration_check("pc-1"));
  cat.set_migration_check("pc-1", {{"inhibited", false}});
  CHECK(cat.migration_check("pc-1")->first == nlohmann::json{{"inhibited", false}});
  util::Db db(db_path);
  util::Stmt version(db, "SELECT value FROM meta WHERE key = 'schema'");
  REQUIRE(version.step());
  CHECK(version.text(0) == "8");
}

TEST_CASE_TEMPLATE("a gc killed between deleting a retired pack's file and its row leaves a clean store", Vol, OnDisk,
                   InMemory) {
  // Found by tests/bench/crash-campaign.sh: kill -9 of the GC right after its unlink().
  TempDir dir;
  Vol vol;
  std::string a = blob('a', 30000), b = blob('b', 30000);
  int64_t gone = 0;
  {
    store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
    repo.put(store::verify_upload(upload_of({a})));
    gone = repo.catalog().packs().back().id;
  }  // sealed
  store::Repository repo(dir.path(), false);
  auto& cat = repo.catalog();
  // What the GC had done when it died: a's record swept, the pack retired, its file unlinked.
  std::vector<util::Digest> swept;
  for (const auto& [id, loc] : cat.chunks().chunks_in_pack(gone)) swept.push_back(id);
  REQUIRE(swept.size() == 1);
  cat.chunks().delete_chunks(swept);
  auto pack = cat.pack(gone);
  REQUIRE(pack);
  REQUIRE(cat.retire_pack(gone, pack->size, 1));
  REQUIRE(repo.volume(pack->volume).remove(pack->name));
  SUBCASE("check finds nothing wrong, and the next gc removes the row") {
    CHECK(repo.check(true, nullptr).problems.empty());
    CHECK(repo.check(false, nullptr).problems.empty());
    store::GcOptions o;
    o.grace_ns = 0;
    auto r = store::collect_garbage(repo, o);
    CHECK(r.pack_files_deleted == 1);
    CHECK_FALSE(repo.catalog().pack(gone));
    CHECK(repo.check(true, nullptr).problems.empty());
  }
  SUBCASE("a missing pack that still holds an indexed chunk is still a problem") {
    repo.put(store::verify_upload(upload_of({b})));
    auto at = cat.find_chunk(util::sha256(b));
    REQUIRE(at);
    REQUIRE(cat.chunks().move_chunk(util::sha256(b), *at, gone, at->offset));
    CHECK_FALSE(repo.check(true, nullptr).problems.empty());
    CHECK_FALSE(repo.check(false, nullptr).problems.empty());
  }
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("store::Repository over store::Volume");

TEST_CASE("the catalog indexes only what the pack writer made durable: a crash loses nothing indexed") {
  TempDir dir;
  InMemory vol;
  std::string a = blob('a', 30000), b = blob('b', 30000);
  {
    store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
    repo.put(store::verify_upload(upload_of({a, b})));
    store::crash_memory_volume(vol.name);  // the power goes before the pack is sealed
    auto pack = repo.catalog().packs().back();
    CHECK(repo.volume(pack.volume).open_pack(pack.name)->size() == pack.size);
  }
  store::Repository repo(dir.path(), false);
  CHECK(repo.check(true, nullptr).problems.empty());
  CHECK(repo.read_plain(util::sha256(b)) == std::vector<uint8_t>(b.begin(), b.end()));
}

TEST_CASE("uploads go to the writable volume with the most free space, as the volumes report it") {
  TempDir dir;
  InMemory small, big;
  store::set_memory_volume_capacity(small.name, 10u << 20);
  store::set_memory_volume_capacity(big.name, 100u << 20);
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, small.url());
  int64_t first = repo.catalog().volumes().at(0).id;
  int64_t second = repo.catalog().add_volume(big.url());
  CHECK(repo.choose_volume() == second);
  repo.put(store::verify_upload(upload_of({blob('a', 30000)})));
  CHECK(repo.catalog().packs().back().volume == second);
  repo.catalog().set_volume_read_only(second, true);
  CHECK(repo.choose_volume() == first);
  repo.put(store::verify_upload(upload_of({blob('b', 30000)})), second);  // read-only: goes elsewhere
  CHECK(repo.catalog().packs().back().volume == first);
  CHECK(repo.check(true, nullptr).problems.empty());
  CHECK_FALSE(fs::exists(dir.path() / "volumes"));
}

TEST_CASE("check notes a pack the catalog does not know, on any volume, and repair indexes it") {
  TempDir dir;
  InMemory vol;
  std::string a = blob('a', 30000);
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  // A pack another process wrote and was killed before indexing.
  auto w = repo.volume(repo.catalog().volumes().at(0).id).create_pack();
  std::string magic(store::k_pack_magic);
  w->append(std::span(reinterpret_cast<const uint8_t*>(magic.data()), magic.size()));
  auto one = upload_of({a});  // one record, as it goes into a pack
  REQUIRE(store::verify_upload(std::span<const uint8_t>(one)).size() == 1);
  w->append(one);
  w->seal();
  auto report = repo.check(false, nullptr);
  CHECK(report.problems.empty());
  REQUIRE(report.notes.size() == 1);
  CHECK(report.notes[0].name == w->name());
  CHECK(report.notes[0].message.find("not in the catalog: mem://") != std::string::npos);
  CHECK_FALSE(repo.has(util::sha256(a)));
  auto repaired = repo.repair(nullptr);
  CHECK(repaired.packs_added == 1);
  CHECK(repaired.chunks_indexed == 1);
  CHECK(repo.read_plain(util::sha256(a)) == std::vector<uint8_t>(a.begin(), a.end()));
  CHECK(repo.check(true, nullptr).notes.empty());
}

TEST_CASE("repair tells a write cut short past the indexed end from damage inside it") {
  TempDir dir;
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse);
  std::string a = blob('a', 30000), b = blob('b', 30000);
  repo.put(store::verify_upload(upload_of({a})));
  repo.close_read_fds();
  fs::path pack = only_pack(dir.path());
  auto size = fs::file_size(pack);
  // A kill -9 between the append and the index: half a record past the indexed end.
  auto half = upload_of({b});
  half.resize(half.size() / 2);
  std::ofstream(pack, std::ios::binary | std::ios::app).write(reinterpret_cast<const char*>(half.data()), static_cast<std::streamsize>(half.size()));
  auto tail = repo.repair(nullptr);
  CHECK(tail.damaged_records == 0);
  REQUIRE(tail.notes.size() == 1);
  CHECK(tail.notes[0].message.find("an unfinished write of " + std::to_string(half.size()) + " bytes") != std::string::npos);
  CHECK(repo.check(true, nullptr).problems.empty());
  // A flipped byte inside what was indexed is damage.
  fs::resize_file(pack, size);
  {
    std::fstream f(pack, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(size - 10));
    f.put('\x5a');
  }
  repo.close_read_fds();
  CHECK(repo.repair(nullptr).damaged_records == 1);
}

TEST_CASE("a pack gone from its volume is integrity to a reader and missing to check") {
  TempDir dir;
  InMemory vol;
  std::string a = blob('a', 30000);
  store::Repository repo(dir.path(), true, store::OrphanPacks::refuse, vol.url());
  repo.put(store::verify_upload(upload_of({a})));
  auto pack = repo.catalog().packs().back();
  repo.close_read_fds();
  REQUIRE(repo.volume(pack.volume).remove(pack.name));
  CHECK_ERROR_KIND(repo.read_plain(util::sha256(a)), ErrorKind::integrity);
  auto report = repo.check(false, nullptr);
  REQUIRE(!report.problems.empty());
  CHECK(report.problems[0].message.find("missing: mem://") != std::string::npos);
}

TEST_SUITE_END();

#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "libmirage/store/repository.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/mirage-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

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
}  // namespace

TEST_SUITE_BEGIN("store::Repository");

TEST_CASE("chunks round-trip, compressed when it pays, and dedupe") {
  TempDir dir;
  store::Repository repo(dir.path, true);
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
}

TEST_CASE("a forged chunk id is refused") {
  std::vector<uint8_t> blob;
  std::string data = "real data";
  store::append_plain(blob, util::sha256(std::string_view("something else")),
                      std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 3);
  CHECK_THROWS_AS(store::verify_upload(blob), Error);
}

TEST_CASE("a truncated upload is refused") {
  auto blob = upload_of({"hello world"});
  blob.pop_back();
  CHECK_THROWS_AS(store::verify_upload(blob), Error);
}

TEST_CASE("check finds a flipped byte and a truncated pack") {
  TempDir dir;
  {
    store::Repository repo(dir.path, true);
    repo.put(store::verify_upload(upload_of({std::string(50000, 'x'), std::string(60000, 'y')})));
    CHECK(repo.check(true, nullptr).problems.empty());
  }
  fs::path pack = only_pack(dir.path);
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
    store::Repository repo(dir.path, false);
    CHECK(repo.check(false, nullptr).problems.empty());  // metadata alone cannot see it
    auto report = repo.check(true, nullptr);
    REQUIRE(report.problems.size() == 1);
    CHECK(report.problems[0].what == "chunk");
  }
  SUBCASE("truncated pack") {
    fs::resize_file(pack, fs::file_size(pack) - 10);
    store::Repository repo(dir.path, false);
    auto report = repo.check(false, nullptr);
    REQUIRE(!report.problems.empty());
    CHECK(report.problems[0].what == "pack");
    CHECK(report.problems[0].message.find("truncated") != std::string::npos);
  }
}

TEST_CASE("opening a missing data directory without create is not_found") {
  TempDir dir;
  try {
    store::Repository repo(dir.path / "nope", false);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::not_found);
  }
}

TEST_SUITE_END();

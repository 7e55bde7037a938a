#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/memory_source.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace mirage;
using mirage::testing::MemorySource;
using tree::Entry;
namespace fs = std::filesystem;

namespace {

/// The objects of `src`, each batch's records handed back in parts of at most
/// `per_part` records (as the protocol source hands back the replies of its two
/// connections without joining them).
class PartedSource : public materialize::ObjectSource {
 public:
  PartedSource(MemorySource& src, size_t per_part) : m_src(src), m_per_part(per_part) {}
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override { return m_src.records(ids); }
  std::vector<std::vector<uint8_t>> record_parts(std::span<const util::Digest> ids) override {
    std::vector<std::vector<uint8_t>> parts;
    for (size_t at = 0; at < ids.size(); at += m_per_part)
      parts.push_back(m_src.records(ids.subspan(at, std::min(m_per_part, ids.size() - at))));
    parts_made += parts.size();
    return parts;
  }
  size_t parts_made = 0;

 private:
  MemorySource& m_src;
  size_t m_per_part;
};

}  // namespace

TEST_CASE("restore: records that come in several parts are all found (files whose chunks span parts)") {
  MemorySource src;
  std::vector<Entry> files;
  std::vector<std::string> contents;
  for (int f = 0; f < 40; ++f) {
    Entry e = src.file("f" + std::to_string(f), "");
    std::string whole;
    for (int c = 0; c < 3; ++c) {  // three chunks each: a file's chunks land in different parts
      std::string piece = "file " + std::to_string(f) + " chunk " + std::to_string(c) + std::string(100 + c, char('a' + f % 26));
      e.chunks.push_back({src.put(piece), piece.size()});
      whole += piece;
    }
    e.size = whole.size();
    files.push_back(e);
    contents.push_back(whole);
  }
  Entry root = src.dir("", {src.dir("d", files)});
  PartedSource parted(src, 7);
  auto to = fs::temp_directory_path() / ("mirage-restore-parts-" + std::to_string(::getpid()));
  fs::remove_all(to);
  auto ro = mirage::testing::restore_options(root, to);
  auto stats = materialize::restore(ro, parted);
  CHECK(stats.files == 40);
  CHECK(parted.parts_made > 1);
  for (int f = 0; f < 40; ++f) CHECK(util::read_file(to / "d" / ("f" + std::to_string(f))) == contents[f]);
  fs::remove_all(to);
}

TEST_CASE("restore: a directory an interrupted restore made is finished by the next, even with overwrite never") {
  MemorySource src;
  Entry proj = src.dir("proj", {src.file("f", "data")});
  proj.mode = 0750;
  Entry dave = src.dir("dave", {proj});
  dave.mode = 0751;
  Entry mine = src.dir("mine", {});
  mine.mode = 0755;
  Entry root = src.dir("", {src.dir("home", {dave, mine})});
  test::TempDir dir;
  fs::path to = dir.path() / "to";
  // What a killed restore left: its directories made 0700 and marked, not finished; a
  // directory of the user's own (unmarked) beside them.
  const char* mark = ::geteuid() == 0 ? "trusted.mirage.restoring" : "user.mirage.restoring";
  fs::create_directories(to / "home" / "dave" / "proj");
  fs::create_directories(to / "home" / "mine");
  for (const auto& d : {to / "home", to / "home" / "dave", to / "home" / "dave" / "proj", to / "home" / "mine"})
    REQUIRE(::chmod(d.c_str(), 0700) == 0);
  for (const auto& d : {to / "home", to / "home" / "dave", to / "home" / "dave" / "proj"})
    REQUIRE(::setxattr(d.c_str(), mark, "1", 1, 0) == 0);
  auto ro = mirage::testing::restore_options(root, to, {"/home/dave"});
  ro.overwrite = materialize::Overwrite::never;
  materialize::restore(ro, src);
  auto mode = [](const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
  };
  CHECK(mode(to / "home") == 0755);  // a parent on the way, marked: finished too
  CHECK(mode(to / "home" / "dave") == 0751);
  CHECK(mode(to / "home" / "dave" / "proj") == 0750);
  CHECK(util::read_file(to / "home" / "dave" / "proj" / "f") == "data");
  CHECK(mode(to / "home" / "mine") == 0700);  // not the restore's, not on its path: kept
  for (const auto& d : {to / "home", to / "home" / "dave", to / "home" / "dave" / "proj"})
    CHECK(::getxattr(d.c_str(), mark, nullptr, 0) < 0);  // no mark is left
  SUBCASE("a restore that finishes leaves no mark on what it made") {
    ro.to = dir.path() / "fresh";
    ro.paths = {"/"};
    materialize::restore(ro, src);
    for (auto& e : fs::recursive_directory_iterator(ro.to))
      if (e.is_directory()) CHECK(::getxattr(e.path().c_str(), mark, nullptr, 0) < 0);
  }
}

TEST_CASE("restore: progress counts the files written whole with the bytes, batch by batch") {
  MemorySource src;
  std::vector<Entry> files;
  for (int f = 0; f < 5000; ++f) files.push_back(src.file("f" + std::to_string(f), "content " + std::to_string(f)));
  Entry root = src.dir("", {src.dir("d", files)});
  test::TempDir dir;
  auto ro = mirage::testing::restore_options(root, dir.path() / "to");
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  ro.progress = [&](uint64_t bytes, uint64_t files_written) { seen.emplace_back(bytes, files_written); };
  auto stats = materialize::restore(ro, src);
  CHECK(stats.files == 5000);
  REQUIRE(seen.size() >= 2);  // more files than one batch holds
  CHECK(seen.back().second > 0);
  CHECK(seen.back().second < 5000);  // reported before the last batch is written
  for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].second >= seen[i - 1].second);
}

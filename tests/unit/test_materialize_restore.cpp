#include <doctest/doctest.h>

#include <filesystem>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/memory_source.hpp"

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
  materialize::RestoreOptions ro;
  ro.to = to;
  ro.paths = {"/"};
  ro.root = root;
  ro.tree = root.subtree;
  auto stats = materialize::restore(ro, parted);
  CHECK(stats.files == 40);
  CHECK(parted.parts_made > 1);
  for (int f = 0; f < 40; ++f) CHECK(util::read_file(to / "d" / ("f" + std::to_string(f))) == contents[f]);
  fs::remove_all(to);
}

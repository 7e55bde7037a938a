#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "libmirage/layer/apply.hpp"
#include "libmirage/util/digest.hpp"

using namespace mirage;

namespace {
tree::ChunkRef chunk(const std::string& name, uint64_t size) { return {util::sha256(name), size}; }
std::optional<util::Digest> id(const std::string& name) { return util::sha256(name); }
using Chunks = std::vector<tree::ChunkRef>;
}  // namespace

TEST_SUITE_BEGIN("layer::delta_bases");

TEST_CASE("an insert that shifts the bytes after it still finds the chunk it went into") {
  // B (64 KiB) took a 40 KiB insert and was cut in two: X (B's first 30 KiB and the
  // insert) and Y (B's last 34 KiB), which now starts past where B ended, inside C.
  std::vector<tree::ChunkRef> before = {chunk("A", 65536), chunk("B", 65536), chunk("C", 65536)};
  std::vector<tree::ChunkRef> after = {chunk("A", 65536), chunk("X", 71680), chunk("Y", 34816), chunk("C", 65536)};
  auto bases = layer::delta_bases(before, after);
  REQUIRE(bases.size() == 4);
  CHECK(bases[1] == id("B"));
  CHECK(bases[2] == id("B"));  // by offset, C: the chunk the endpoint has whole
  CHECK_FALSE(bases[0]);       // shared chunks need no base
  CHECK_FALSE(bases[3]);
}

TEST_CASE("an overwrite in place, an append, and a chunk moved by an insert before it") {
  std::vector<tree::ChunkRef> before = {chunk("A", 50000), chunk("B", 60000), chunk("C", 70000), chunk("D", 40000)};
  // B rewritten in place; D grew at its end; then new bytes after it.
  auto bases = layer::delta_bases(before, Chunks{chunk("A", 50000), chunk("B2", 60000), chunk("C", 70000), chunk("D2", 48000),
                                           chunk("N", 30000)});
  CHECK(bases[1] == id("B"));
  CHECK(bases[3] == id("D"));
  CHECK_FALSE(bases[4]);  // appended bytes: nothing of the old file was replaced there
  // Two changes far apart, the second after a 20 kB insert in A: each finds its own.
  bases = layer::delta_bases(before, Chunks{chunk("A2", 70000), chunk("B", 60000), chunk("C2", 75000), chunk("D", 40000)});
  CHECK(bases[0] == id("A"));
  CHECK(bases[2] == id("C"));
}

TEST_CASE("no base for new bytes between two kept chunks, nor one under 1 KiB") {
  std::vector<tree::ChunkRef> before = {chunk("A", 50000), chunk("s", 500), chunk("B", 60000)};
  auto bases = layer::delta_bases(before, Chunks{chunk("A", 50000), chunk("s2", 900), chunk("B", 60000), chunk("N", 100)});
  CHECK_FALSE(bases[1]);  // its base would be "s", 500 bytes
  CHECK_FALSE(bases[3]);
  bases = layer::delta_bases(Chunks{}, Chunks{chunk("N", 100000)});
  CHECK_FALSE(bases[0]);
}

TEST_SUITE_END();

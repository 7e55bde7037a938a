#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "libmirage/chunk/fastcdc.hpp"

using namespace mirage::chunk;

namespace {
std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<size_t> boundaries(const std::vector<uint8_t>& data, const Chunker& c) {
  std::vector<size_t> out;
  size_t pos = 0;
  while (pos < data.size()) {
    pos += c.cut(std::span(data).subspan(pos));
    out.push_back(pos);
  }
  return out;
}
/// FastCDC a byte at a time, as first written: the cut points of every store made so
/// far. Any faster cut() must find exactly these, or old chunks stop deduplicating.
size_t reference_cut(std::span<const uint8_t> data, const Params& p) {
  auto top = [](int n) { return n <= 0 ? uint64_t(0) : ~uint64_t(0) << (64 - n); };
  int bits = std::countr_zero(p.avg_size);
  const uint64_t small = top(bits + 2), large = top(bits - 2);
  const size_t n = std::min(data.size(), p.max_size);
  if (n <= p.min_size) return n;
  uint64_t h = 0;
  size_t i = p.min_size - 64;
  for (; i < p.min_size; ++i) h = (h << 1) + gear(data[i]);
  for (; i < std::min(p.avg_size, n); ++i) {
    h = (h << 1) + gear(data[i]);
    if (!(h & small)) return i + 1;
  }
  for (; i < n; ++i) {
    h = (h << 1) + gear(data[i]);
    if (!(h & large)) return i + 1;
  }
  return n;
}
}  // namespace

TEST_SUITE_BEGIN("chunk::Chunker");

TEST_CASE("cut points equal the byte-at-a-time reference") {
  for (Params p : {Params{}, Params{64, 256, 1024}, Params{100, 128, 300}}) {
    Chunker c(p);
    for (uint32_t seed = 10; seed < 14; ++seed) {
      auto data = random_bytes(seed == 10 ? (3u << 20) + 7 : 200000 + seed, seed);
      if (seed == 13)  // low-entropy runs cut late, at the larger mask or at max
        for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(data[i] & 3);
      size_t pos = 0;
      while (pos < data.size()) {
        auto rest = std::span<const uint8_t>(data).subspan(pos);
        size_t len = c.cut(rest);
        REQUIRE(len == reference_cut(rest, p));
        // Every length of the tail too (odd and even ends of the two-byte steps).
        if (pos == 0)
          for (size_t k = 1; k < 700 && k < rest.size(); k += 3) REQUIRE(c.cut(rest.first(k)) == reference_cut(rest.first(k), p));
        pos += len;
      }
    }
  }
}

TEST_CASE("the rolled gear hash equals a fresh hash of the last 64 bytes at every offset") {
  auto data = random_bytes(4096, 1);
  uint64_t h = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    h = (h << 1) + gear(data[i]);
    if (i >= 63) {
      REQUIRE(h == window_hash(std::span(data).subspan(i - 63, 64)));
      // Older bytes do not matter: a longer window gives the same value.
      if (i >= 200) REQUIRE(h == window_hash(std::span(data).subspan(i - 200, 201)));
    }
  }
}

TEST_CASE("chunks respect min and max and cover the input exactly") {
  Chunker c;
  auto data = random_bytes(8 << 20, 2);
  auto cuts = boundaries(data, c);
  size_t prev = 0;
  for (size_t i = 0; i < cuts.size(); ++i) {
    size_t len = cuts[i] - prev;
    CHECK(len <= c.params().max_size);
    if (i + 1 < cuts.size()) CHECK(len >= c.params().min_size);
    prev = cuts[i];
  }
  CHECK(cuts.back() == data.size());
  double avg = double(data.size()) / double(cuts.size());
  CHECK(avg > 40 * 1024);
  CHECK(avg < 100 * 1024);
}

TEST_CASE("boundaries after an insert stay put") {
  Chunker c;
  auto data = random_bytes(4 << 20, 3);
  auto before = boundaries(data, c);
  SUBCASE("insert near the start") {
    std::vector<uint8_t> edited = data;
    edited.insert(edited.begin() + 1000, {1, 2, 3, 4, 5, 6, 7});
    auto after = boundaries(edited, c);
    std::set<size_t> shifted;
    for (auto b : after) shifted.insert(b - 7);
    size_t kept = 0;
    for (auto b : before)
      if (b > 300000 && shifted.count(b)) kept++;
    size_t total = 0;
    for (auto b : before)
      if (b > 300000) total++;
    CHECK(kept == total);
  }
  SUBCASE("prepend") {
    std::vector<uint8_t> edited(data.size() + 100, 0xAB);
    std::copy(data.begin(), data.end(), edited.begin() + 100);
    auto after = boundaries(edited, c);
    std::set<size_t> shifted;
    for (auto b : after) shifted.insert(b - 100);
    size_t kept = 0, total = 0;
    for (auto b : before)
      if (b > 300000) {
        total++;
        kept += shifted.count(b);
      }
    CHECK(kept == total);
  }
}

TEST_CASE("short input is one chunk and empty input none") {
  Chunker c;
  std::vector<uint8_t> small(100, 7);
  CHECK(c.cut(small) == 100);
  CHECK(c.cut(std::span<const uint8_t>()) == 0);
}

TEST_CASE("rejects inconsistent parameters") {
  // Parameters are compiled in, never read from a user: a bad set is a programming error.
  CHECK_THROWS_AS(Chunker(Params{16, 64, 256}), std::invalid_argument);
  CHECK_THROWS_AS(Chunker(Params{16384, 60000, 262144}), std::invalid_argument);
}

TEST_SUITE_END();

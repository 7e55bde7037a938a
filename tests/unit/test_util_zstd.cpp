#include <doctest/doctest.h>

#include <random>

#include "libmirage/util/error.hpp"
#include "libmirage/util/zstd.hpp"

using namespace mirage;

TEST_SUITE_BEGIN("util::zstd");

TEST_CASE("a delta against a similar base is small and rebuilds the data exactly") {
  std::mt19937 rng(42);
  std::vector<uint8_t> base(65536);
  for (auto& b : base) b = static_cast<uint8_t>(rng());
  auto changed = base;
  for (size_t i = 30000; i < 34096; ++i) changed[i] = static_cast<uint8_t>(rng());  // 4 KiB rewritten
  auto frame = util::zstd_compress_delta(changed, base, 3);
  CHECK(frame.size() < 6000);                                  // about the change, not the chunk
  CHECK(util::zstd_compress(changed, 3).size() > 60000);       // random data does not compress alone
  std::vector<uint8_t> out(changed.size());
  util::zstd_decompress_delta(frame, base, out);
  CHECK(out == changed);
}

TEST_CASE("a delta decoded against another base does not rebuild the data") {
  std::mt19937 rng(7);
  std::vector<uint8_t> base(20000), other(20000);
  for (auto& b : base) b = static_cast<uint8_t>(rng());
  for (auto& b : other) b = static_cast<uint8_t>(rng());
  auto data = base;
  data[100] ^= 1;
  auto frame = util::zstd_compress_delta(data, base, 3);
  std::vector<uint8_t> out(data.size());
  bool rebuilt = false;
  try {
    util::zstd_decompress_delta(frame, other, out);
    rebuilt = out == data;
  } catch (const Error&) {
  }
  CHECK_FALSE(rebuilt);
}

TEST_SUITE_END();

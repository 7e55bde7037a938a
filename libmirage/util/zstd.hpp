#pragma once
// The one wrapper around libzstd.
#include <cstdint>
#include <span>
#include <vector>

namespace mirage::util {

/// Compresses with zstd at `level`; each thread reuses its own context.
std::vector<uint8_t> zstd_compress(std::span<const uint8_t> data, int level);
/// Decompresses a zstd frame that must expand to exactly `raw_size` bytes;
/// throws Error(integrity) otherwise.
void zstd_decompress(std::span<const uint8_t> frame, std::span<uint8_t> out);

}  // namespace mirage::util

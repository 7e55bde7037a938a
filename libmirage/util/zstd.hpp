#pragma once
// The one wrapper around libzstd.
#include <cstdint>
#include <span>
#include <vector>

namespace mirage::util {

/// Compresses with zstd at `level`; each thread reuses its own context.
std::vector<uint8_t> zstd_compress(std::span<const uint8_t> data, int level);
/// The most zstd_compress_into may write for `size` bytes of input.
size_t zstd_bound(size_t size);
/// Compresses into `out` (at least zstd_bound(data.size()) bytes); returns the length.
size_t zstd_compress_into(std::span<const uint8_t> data, std::span<uint8_t> out, int level);
/// Decompresses a zstd frame that must expand to exactly `raw_size` bytes;
/// throws Error(integrity) otherwise.
void zstd_decompress(std::span<const uint8_t> frame, std::span<uint8_t> out);

/// The plaintext size a zstd frame's header declares (without decompressing it); throws
/// Error(integrity) for a frame whose header is damaged or does not say.
uint64_t zstd_content_size(std::span<const uint8_t> frame);

/// zstd's "patch from" mode: compresses `data` referring to `base` (which the receiver
/// has), so a chunk that differs a little from one the receiver holds costs about the
/// size of the difference.
std::vector<uint8_t> zstd_compress_delta(std::span<const uint8_t> data, std::span<const uint8_t> base, int level);
/// Decompresses a frame made by zstd_compress_delta with the same `base`.
void zstd_decompress_delta(std::span<const uint8_t> frame, std::span<const uint8_t> base, std::span<uint8_t> out);

}  // namespace mirage::util

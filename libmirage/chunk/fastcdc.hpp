#pragma once
// Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016) with a gear hash and
// normalized chunking.
//
// The gear hash rolls one byte at a time, h = (h << 1) + G[b]; after 64 bytes every
// older byte has been shifted out, so h at offset i depends only on bytes i-63..i: a
// boundary is a property of the content around it, not of where the chunk began, and
// an insert moves only the boundaries next to it. A cut is taken where the top bits
// of h are zero. Normalized chunking uses a harder mask (more bits) before the average
// size and an easier one after it, which narrows the size distribution around the
// average. Hashing starts 64 bytes before the minimum size so the window is full at
// the first candidate; bytes before that are skipped unhashed (the FastCDC speed-up).
//
// The gear table comes from SplitMix64 with a fixed seed: it is part of the storage
// format (changing it changes every chunk id), so it never changes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace mirage::chunk {

struct Params {
  size_t min_size = 16 * 1024;
  size_t avg_size = 64 * 1024;  ///< must be a power of two
  size_t max_size = 256 * 1024;
};

/// The gear table entry for byte b.
uint64_t gear(uint8_t b);

/// Gear hash of a window, computed from scratch (only the last 64 bytes matter).
uint64_t window_hash(std::span<const uint8_t> window);

class Chunker {
 public:
  explicit Chunker(Params params = {});

  /// Length of the chunk that starts at data[0]. `data` must hold at least max_size
  /// bytes unless it is the end of the stream. Returns data.size() when it is shorter
  /// than the minimum, never 0 for non-empty data.
  size_t cut(std::span<const uint8_t> data) const;

  const Params& params() const { return m_params; }

 private:
  Params m_params;
  uint64_t m_mask_small;  ///< before avg_size: harder to match
  uint64_t m_mask_large;  ///< after avg_size: easier to match
};

}  // namespace mirage::chunk

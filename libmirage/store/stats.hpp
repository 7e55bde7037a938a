#pragma once
// Space used by snapshots, as `mirage stats` reports it (restic stats' modes in one):
// logical bytes (what restoring every snapshot would write), unique bytes (the distinct
// chunks they reference, once: after dedup) and stored bytes (those chunks as stored,
// after compression).
#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "libmirage/catalog/catalog.hpp"

namespace mirage::store {

class Repository;

struct UsageStats {
  uint64_t snapshots = 0;
  uint64_t logical_bytes = 0;  ///< file bytes summed over every snapshot
  uint64_t unique_chunks = 0;
  uint64_t unique_bytes = 0;  ///< plaintext of the distinct file chunks
  uint64_t stored_bytes = 0;  ///< those chunks as stored (compressed), without record headers
  uint64_t trees = 0;         ///< distinct directory objects walked
};
/// Adds the ratios: dedup_ratio (logical / unique) and compression_ratio (unique /
/// stored), 0 when their divisor is.
void to_json(nlohmann::json& j, const UsageStats& s);

/// A chunk's plaintext and stored sizes, by id: what several walks referenced together.
using ChunkSizes = std::unordered_map<util::Digest, std::pair<uint64_t, uint64_t>, util::DigestHash>;

/// Walks `snapshots` (each distinct tree once, a directory a piece at a time) and sums
/// their usage; adds every chunk it meets to `all`, so a caller sums devices apart and
/// the store from the same walks (total()). Errors are the repository's.
UsageStats usage(Repository& repo, std::span<const catalog::Snapshot> snapshots, ChunkSizes& all);
/// The usage of several walks together: their snapshots and logical bytes summed, the
/// unique and stored bytes of `all`.
UsageStats total(std::span<const UsageStats> parts, const ChunkSizes& all);

}  // namespace mirage::store

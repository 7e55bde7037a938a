#pragma once
// Garbage collection of a data directory, safe while endpoints keep uploading:
//
// 1. Mark: every tree and chunk reachable from a snapshot or a layer goes into the
//    catalog's mark set (SQLite: a temporary table on disk, so memory stays bounded
//    however large the store).
// 2. Sweep, in batches, each one write transaction: first mark the roots committed
//    since step 1 (a commit checks its chunks exist inside its own transaction, so a
//    commit either lands before a batch and is marked, or after and finds what the
//    batch deleted missing, and the client uploads it again); then drop from the index
//    the chunks nothing reaches, except those pinned: chunks added since the oldest
//    upload still in flight began (an upload starts with its first chunks and ends with
//    its commit; one silent for `session_timeout` counts as abandoned), and chunks
//    younger than the grace period.
// 3. Repack: sealed (or long idle) packs whose live share is below a threshold are
//    rewritten, their live records copied to a new pack and the index moved in one
//    transaction, up to a byte cap per run; a pack with nothing live is retired
//    outright. Retired pack files are deleted once the grace period has passed since
//    (readers that raced a move look the chunk up again).
// Nothing takes an exclusive lock on the store; one GC runs at a time (the catalog's GC
// lock: with SQLite, a flock on DATA/gc.lock). Every step runs through named catalog
// operations (catalog::MarkSet, ChunkIndex, retire_pack...): no SQL here.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirage::store {

class Repository;

struct GcOptions {
  bool dry_run = false;
  int64_t grace_ns = 600LL * 1000000000;    ///< chunks younger than this are kept
  int64_t session_timeout_ns = 3600LL * 1000000000;  ///< an upload silent this long is abandoned
  double repack_below = 0.5;                ///< rewrite packs whose live share is below this
  uint64_t max_repack_bytes = 1ULL << 30;   ///< live bytes copied per run at most
  /// Snapshots marked as if gone (a dry run passes those retention would expire first).
  std::vector<std::string> skip_snapshots;
  std::function<void(const std::string&)> progress;
  /// Test seam: called once between the mark and the sweep, where a commit of another
  /// process can land unseen by the mark.
  std::function<void()> after_mark;
};

/// What one collection found and did. In a dry run the counts of what it would delete,
/// repack, retire and free (their JSON keys then read would_delete, would_repack...).
struct GcReport {
  bool dry_run = false;
  int64_t grace_seconds = 0;
  uint64_t roots = 0;               ///< snapshots and layers marked from
  uint64_t trees = 0;               ///< tree objects read by the mark
  uint64_t chunks = 0;              ///< index entries swept
  uint64_t unreferenced = 0;        ///< of those, reached by nothing
  uint64_t pinned = 0;              ///< unreferenced but kept (grace, uploads in flight)
  uint64_t uploads_in_flight = 0;
  uint64_t deleted = 0;             ///< index entries dropped
  uint64_t deleted_bytes = 0;
  uint64_t packs = 0;               ///< packs looked at for repacking
  uint64_t repacked = 0;
  uint64_t retired = 0;
  uint64_t moved_bytes = 0;         ///< live bytes copied by repacking
  uint64_t freed_bytes = 0;
  uint64_t pack_files_deleted = 0;
  uint64_t packs_awaiting_deletion = 0;
  double seconds = 0;
};
void to_json(nlohmann::json& j, const GcReport& r);

/// Runs one collection. Throws Error(precondition) when another GC holds the lock,
/// Error(integrity) when a tree cannot be read (then nothing is deleted).
GcReport collect_garbage(Repository& repo, const GcOptions& options);

}  // namespace mirage::store

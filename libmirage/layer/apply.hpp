#pragma once
// Carrying out a plan on an endpoint's root, crash-safely.
//
// Staging: every new file, symlink, node and merged file is written under a temporary
// name beside its target (".mirage-new-TOKEN-N"), with its metadata; new directories
// are made in place. Content comes first from the endpoint's own files (a chunk found
// in E at a known offset, verified by its SHA-256), then as a zstd delta against the
// chunk E's version of the same file has at that offset, then whole from the store.
// Commit: once everything is staged (and synced), the journal switches to "commit"
// and lists every step: renames into place (E's version first set aside as
// PATH.mirage-local where the plan says), metadata changes, removals, directory
// metadata. Each step is idempotent.
// Recovery: a journal in "staging" is rolled back (temporaries removed, directories
// made by the apply removed when empty); one in "commit" is carried to its end.
// Every path is opened relative to directory fds with O_NOFOLLOW.
// Streaming (ApplyOptions::placeholder): chosen files are staged as placeholders and
// renamed into place like the rest; their content is the caller's to fill.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/layer/plan.hpp"
#include "libmirage/materialize/restorer.hpp"
#include "libmirage/scan/files_cache.hpp"

namespace mirage::layer {

struct ApplyOptions {
  std::filesystem::path root;
  std::filesystem::path journal;  ///< the journal file (in the endpoint's state directory)
  std::function<void(uint64_t done, uint64_t total)> progress;
  /// Test hook: called before each committed step with its index (a crash test kills here).
  std::function<void(size_t)> before_step;
  /// Test hook: called before each entry is staged, with its index.
  std::function<void(size_t)> before_stage;
  /// A streamed revert: a regular file (created or replaced, not empty, not merged) for
  /// which this returns true is staged as a placeholder (materialize/stream.hpp: its final
  /// size as a hole, its metadata, the mark) instead of being written; the caller fills
  /// it after the commit (ApplyResult::placeholders). Hardlinks to it share it.
  std::function<bool(const std::string& path, const tree::Entry&)> placeholder;
};

struct ApplyResult {
  uint64_t written = 0, metadata = 0, removed = 0, merged = 0, saved_local = 0, kept_not_empty = 0, linked = 0;
  uint64_t bytes_local = 0, bytes_fetched = 0;
  uint64_t bytes_delta = 0;  ///< wire bytes of chunks rebuilt from deltas against the endpoint's own
  /// Wall seconds staging (fetching and writing temporaries beside their targets: the
  /// system unchanged) and committing (the renames, removals and metadata: the switch).
  double stage_seconds = 0, commit_seconds = 0;
  std::vector<std::string> warnings;
  /// Regular files put in place with their known chunks and stamps after the commit
  /// (dir path, file), so the next scan need not read them again.
  std::vector<std::pair<std::string, scan::CachedFile>> installed;
  /// The paths staged as placeholders (never in `installed`: their bytes are not there).
  std::vector<std::string> placeholders;
};
void to_json(nlohmann::json& j, const ApplyResult& r);

/// For each chunk of a file's new version (`after`), the chunk of the endpoint's own
/// version (`before`) it most likely differs from a little, to fetch it as a delta
/// against: the chunks both versions share anchor the two lists; a changed chunk is
/// matched within the stretch of `before` between the anchors around it, at the same
/// relative position (so an insert that shifted the bytes after it still finds the
/// chunk it went into). Nothing for a chunk with no such stretch (new bytes at the end,
/// or between two shared chunks) or a base under 1 KiB.
std::vector<std::optional<util::Digest>> delta_bases(std::span<const tree::ChunkRef> before,
                                                      std::span<const tree::ChunkRef> after);

/// Stages and commits `plan`. `e` is the endpoint as scanned (for reusing its chunks).
ApplyResult apply(const Plan& plan, const Flat& e, materialize::ObjectSource& source, const ApplyOptions& options);

/// Finishes ("resumed") or rolls back ("rolled_back") an interrupted apply; "none"
/// when there is no journal.
std::string recover(const std::filesystem::path& root, const std::filesystem::path& journal);

struct HookResult {
  std::string hook;
  int status = 0;  ///< exit status; -1 when it could not be started
};
/// Runs the executables in ROOT/`hooks_dir` (absolute within ROOT: post-layer hooks, or
/// an OS migration's /etc/mirage/post-migration.d) in name order (in a chroot when ROOT
/// is not "/"), their output on stderr. Only regular executable files run: a symbolic
/// link (which could point out of ROOT), or the directory being one, is warned of.
std::vector<HookResult> run_hooks(const std::filesystem::path& root,
                                  const std::string& hooks_dir = "/etc/mirage/post-layer.d");

}  // namespace mirage::layer

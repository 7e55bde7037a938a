#pragma once
// Scanning an endpoint: walk a root, cut files into chunks, upload what the server
// lacks, build one tree object per directory, return the snapshot's root.
//
// The walk is metadata only (openat/fstatat relative to directory fds, never following
// a symlink), on as many threads as there are workers (at most four), a directory at a
// time each; file contents go to worker threads, each reading,
// chunking, hashing, asking the server which chunks it lacks (in batches) and
// compressing and sending only those (a batch's send runs in the background while the
// worker goes on with its next batch; at most one in flight a worker). Trees are built
// bottom-up once every file of the walk is done. The endpoint holds no global index:
// only the ids of the last committed snapshot, in the files cache.
#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/scan/files_cache.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::scan {

using util::Digest;

/// Where chunks go. Both calls may come from several threads at once.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  /// For each id, true when the server lacks it.
  virtual std::vector<bool> missing(std::span<const Digest> ids) = 0;
  /// Uploads back-to-back records (store/record.hpp).
  virtual void put(std::vector<uint8_t> records) = 0;
};

/// An entry a scan could not back up, and why ("open: Permission denied", "4500 xattrs,
/// more than 4096").
struct Unreadable {
  std::string path;  ///< root-relative, with a leading slash
  std::string reason;
};
void to_json(nlohmann::json& j, const Unreadable& u);
/// How many unreadable entries a ScanStats names (the count covers them all).
inline constexpr size_t k_max_unreadable_listed = 100;

struct ScanStats {
  uint64_t files = 0, dirs = 0, symlinks = 0, others = 0, hardlinks = 0;
  uint64_t bytes = 0;          ///< sum of file sizes in the snapshot
  uint64_t files_read = 0;     ///< files whose content was read (not in the cache)
  uint64_t bytes_read = 0;
  uint64_t chunks_new = 0;     ///< chunks the server lacked
  uint64_t bytes_new = 0;      ///< their plaintext size
  uint64_t bytes_sent = 0;     ///< their stored (compressed) size
  uint64_t trees_new = 0;
  uint64_t skipped = 0;        ///< entries left out by the upload policy
  /// Entries that could not be read or stored (left out, or a directory kept empty):
  /// the snapshot is incomplete when this is not 0.
  uint64_t unreadable = 0;
  std::vector<Unreadable> unreadable_entries;  ///< the first k_max_unreadable_listed of them
  std::vector<std::string> warnings;
};
void to_json(nlohmann::json& j, const ScanStats& s);

struct Progress {
  uint64_t files = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_to_read = 0;
  bool walking = true;
};

struct ScanOptions {
  std::filesystem::path root;
  policy::UploadPolicy policy = policy::UploadPolicy::defaults();
  /// The previous cache, may be null. The scan takes (moves) the chunk lists of the files
  /// it finds unchanged out of it: afterwards it answers has_tree() and nothing else.
  FilesCache* cache = nullptr;
  int compression_level = 3;
  unsigned threads = 2;
  std::function<void(const Progress&)> progress;  ///< called about 4 times a second
  /// Called with every tree object built that `cache` does not list (from the scanning
  /// thread), e.g. to keep a local copy for later layer applies: one the cache lists was
  /// built, and given here, by the sync that saved it.
  std::function<void(const Digest&, std::span<const uint8_t>)> on_tree;
};

struct ScanResult {
  Digest tree;            ///< the root directory's tree object
  tree::Entry root;       ///< the root directory's own metadata (name empty)
  ScanStats stats;
  FilesCache next_cache;  ///< to be saved once the server commits the snapshot
};

/// Scans options.root at any depth; throws Error naming the path on anything it cannot
/// carry on past. An entry that cannot be read (open, read, stat, xattrs, symlink) or
/// stored (tree::entry_problem) is left out, a directory that cannot be opened is kept
/// empty; each is counted in stats.unreadable and named (the first ones) in
/// stats.unreadable_entries, so the caller can tell an incomplete snapshot. The walk reads
/// every entry relative to its directory's fd; it never changes the working directory.
ScanResult scan(const ScanOptions& options, ChunkSink& sink);

/// Reads an entry's metadata (not contents): kind, mode, owner, times, rdev, symlink
/// target, xattrs (util::list_xattrs; not when `list_xattrs` is false: it is known to
/// have none). `st` is its lstat.
tree::Entry entry_from_stat(int dirfd, const std::string& name, const struct stat& st, bool list_xattrs = true);
/// Opens `relpath` (no leading /) below `rootfd` for reading without following any
/// symlink on the way or leaving the root, at any depth, and without waiting on a FIFO
/// (the fd is blocking again once open); -1 with errno otherwise.
int open_beneath(int rootfd, const std::string& relpath);

}  // namespace mirage::scan

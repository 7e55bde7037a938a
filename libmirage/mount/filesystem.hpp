#pragma once
// A device's snapshots as a read-only filesystem, for `mirage-restore mount` (the FUSE
// glue is the executable's; this is what it asks). Inode numbers, attributes, directory
// listings, symlink targets, xattrs and file bytes, read through materialize's
// ObjectSource: the same reads (and so the same access checks) as a restore.
//
// Layout (as `restic mount` and `borg mount` show theirs):
//   /snapshots/<id>/          each snapshot's tree
//   /latest -> snapshots/<id> the newest
//   /by-date/<time> -> ../snapshots/<id>
//                             <time> is RFC 3339 UTC to the second (2026-12-03T10:15:00Z);
//                             a second snapshot in the same second gets "-1", then "-2"
// With `single`, the root is that one snapshot's tree instead.
//
// With a `refresh` (Options), the layout follows the device: a lookup or listing in it
// asks for the snapshot list again when the last time is `refresh_seconds` past, so a
// snapshot committed after the mount appears (and an expired one leaves the listing), and
// `latest` becomes a new link inode when the newest changes (the kernel's cached link
// stays right for the old inode). changing() names the inodes a caller must not let the
// kernel cache for long.
//
// Entries keep their owner, mode, ns mtime (also atime and ctime), xattrs, symlink target,
// device number; members of a hardlink group share one inode, whose link count is the
// group's size in the snapshot. The group sizes are counted per directory object, once
// per object, the first time a member is looked up: a directory several snapshots share
// (unchanged between them) is counted once for all, so a later snapshot's count walks
// only what changed. A sparse file reports the blocks of its non-zero chunks.
//
// Memory is bounded: decoded directories and file chunks are kept in two LRU caches of
// a set size (Options), and inodes live while the kernel holds them (forget()). An
// entry's inode number is a hash of its snapshot and path (or hardlink group), so it is
// the same in a listing, in stat, and after the kernel forgot and looked it up again. Reads
// fetch only the chunks covering the requested range; a read that continues where the
// last one on the same open file ended also fetches the next `readahead_bytes` in the
// same request, and starts fetching the window after that in the background (one such
// fetch at a time; its records are decoded by the caller's thread when needed). Not
// thread-safe: one caller at a time.
#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::mount {

using materialize::ObjectSource;

struct Snapshot {
  std::string id;
  int64_t time_ns = 0;
  tree::Entry root;  ///< the snapshot's root directory entry
  uint64_t bytes = 0, entries = 0;  ///< its file bytes and entries (the snapshot's stats), for statfs
};

struct Options {
  uint64_t tree_cache_bytes = 64u << 20;    ///< decoded directories (estimated size)
  uint64_t chunk_cache_bytes = 128u << 20;  ///< decoded file chunks
  uint64_t readahead_bytes = 8u << 20;      ///< fetched ahead of a sequential read
  /// A sequential read also starts fetching the readahead window after its own on
  /// another thread (the source's records() must then be thread-safe; the protocol
  /// client's is).
  bool background = true;
  bool single = false;                      ///< the root is the (one) snapshot's tree
  uint32_t uid = 0, gid = 0;                ///< owner of the layout's own directories and links
  /// The device's snapshots now, oldest first; an empty list keeps the last one (the
  /// caller reports its own failure). Not with `single`. Called on the caller's thread.
  std::function<std::vector<Snapshot>()> refresh;
  double refresh_seconds = 5;  ///< at most one refresh in this time
};

/// What statfs reports: the listed snapshots' sizes added up.
struct Usage {
  uint64_t bytes = 0, entries = 0, snapshots = 0;
};

/// One name in a directory listing: its type and the inode number lookup() will give it
/// (a hash of its path or hardlink group: rarely, on a collision, lookup gives another).
struct DirItem {
  std::string name;
  mode_t type = 0;  ///< S_IFDIR, S_IFREG, ...
  uint64_t ino = 0;
};

/// An open directory: its names in order (stable while it is open).
struct DirHandle {
  uint64_t ino = 0;
  std::vector<DirItem> items;
};

/// An open file: its entry, where each chunk starts, and where the last read ended.
struct FileHandle {
  tree::Entry entry;
  std::vector<uint64_t> starts;
  uint64_t next = 0;
};

struct CacheStats {
  uint64_t inodes = 0;
  uint64_t tree_bytes = 0, tree_hits = 0, tree_misses = 0;
  uint64_t chunk_bytes = 0, chunk_hits = 0, chunk_misses = 0;
  uint64_t fetches = 0;  ///< records() requests made for file data
};

class Filesystem {
 public:
  static constexpr uint64_t k_root = 1;

  /// `snapshots` oldest first (as snapshot.list gives them); with options.single exactly
  /// one. Throws Error(usage) for an empty list, or several with single.
  Filesystem(ObjectSource& source, std::vector<Snapshot> snapshots, Options options);
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  /// The entry `name` in directory `parent`, counted as one lookup of its inode (the
  /// kernel's reference, released by forget()). Error(not_found) when absent,
  /// Error(usage) when `parent` is not a directory.
  struct stat lookup(uint64_t parent, std::string_view name);
  /// Releases `n` lookups of `ino`; at none it is dropped (layout inodes never are).
  void forget(uint64_t ino, uint64_t n);
  /// Error(not_found) for an inode not (or no longer) known.
  struct stat getattr(uint64_t ino);
  /// Error(usage) when `ino` is not a symlink.
  std::string readlink(uint64_t ino);

  /// Error(usage) when `ino` is not a directory.
  std::unique_ptr<DirHandle> opendir(uint64_t ino);
  /// Looks item `index` of an open directory up (one lookup, as lookup()).
  struct stat lookup_item(const DirHandle& dir, size_t index);

  /// Error(usage) when `ino` is not a regular file.
  std::unique_ptr<FileHandle> open(uint64_t ino);
  /// Fills `out` from `offset` (fewer bytes at the end of the file); returns the count.
  /// Error(integrity) when a chunk is missing or damaged.
  size_t read(FileHandle& file, uint64_t offset, std::span<uint8_t> out);

  /// Names of the entry's xattrs, in order.
  std::vector<std::string> listxattr(uint64_t ino);
  /// Its value, or nullopt when the entry has no such xattr.
  std::optional<std::string> getxattr(uint64_t ino, std::string_view name);

  CacheStats stats() const;
  size_t snapshot_count() const;
  /// The listed snapshots' sizes (refreshing the list as a lookup in the layout does).
  Usage usage();
  /// True for an inode of the layout (root, snapshots/, by-date/, latest) when it can
  /// change, i.e. with a refresh: the kernel may cache it only briefly.
  bool changing(uint64_t ino) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> m;
};

/// The by-date names of `snapshots` (oldest first), in the same order (see the layout).
std::vector<std::string> date_names(const std::vector<Snapshot>& snapshots);

/// The mount's source name, "mirage:DEVICE", safe in a mount option list and in
/// /proc/mounts: any byte of `device_id` (as the server sent it) other than a letter,
/// digit, '-', '_', '.' or ':' is %XX (a ',' would start another option, "suid" say;
/// a space or a newline would break the mount table's line).
std::string fsname(const std::string& device_id);

}  // namespace mirage::mount

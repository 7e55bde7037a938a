#pragma once
// The endpoint's files cache: for each path, the (size, mtime ns, ctime ns, inode) it
// had and the chunks it was cut into, so an unchanged file is not read again; and the
// tree ids of the last committed snapshot. It is written only after the server has
// committed a snapshot, so every chunk and tree it names is known to be stored.
//
// Entries are grouped by directory (one hash lookup per directory during a walk, then
// a binary search among its files, which are sorted by name).
//
// File format:
//   "MFC3"
//   ndirs varint, then per directory: path str, nfiles varint, then per file (sorted
//     by name): name str, size varint, mtime svarint, ctime svarint, inode varint,
//     flags varint (1: no xattrs), nchunks varint, (id 32 bytes, size varint)*
//   ntrees varint, then tree ids (32 bytes each)
//   xxh3-64 of all the above, u64 le
// "MFC2", the format before, is the same without flags and is still read. A damaged or
// foreign file is ignored (the next scan reads everything).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "libmirage/tree/tree.hpp"

namespace mirage::scan {

struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  bool operator==(const FileStamp&) const = default;
};

struct CachedFile {
  std::string name;
  FileStamp stamp;
  std::vector<tree::ChunkRef> chunks;
  /// It had no xattrs at this stamp: a scan that finds the stamp unchanged need not list
  /// them (setting or removing one changes the ctime). False: unknown, or it had some.
  bool no_xattrs = false;
};

class FilesCache {
 public:
  /// Loads the cache; a missing or damaged file gives an empty cache (and `damaged`).
  static FilesCache load(const std::filesystem::path& file, bool* damaged = nullptr);
  /// Writes durably (temp file, fsync, rename).
  void save(const std::filesystem::path& file) const { save_encoded(file, encode()); }
  /// The file's bytes, and writing them (a sync encodes while its commit is checked and
  /// writes only once the commit is taken).
  std::vector<uint8_t> encode() const;
  static void save_encoded(const std::filesystem::path& file, std::span<const uint8_t> bytes);

  /// The cached files of a directory ("/usr/bin"), sorted by name; nullptr when none.
  const std::vector<CachedFile>* directory(const std::string& dir_path) const;
  std::vector<CachedFile>* directory(const std::string& dir_path);
  /// `name`'s record in `files` (from directory()) when its stamp is unchanged.
  static const CachedFile* lookup(const std::vector<CachedFile>* files, const std::string& name, const FileStamp& stamp);
  static CachedFile* lookup(std::vector<CachedFile>* files, const std::string& name, const FileStamp& stamp) {
    return const_cast<CachedFile*>(lookup(const_cast<const std::vector<CachedFile>*>(files), name, stamp));
  }
  /// Records a directory's files; `files` must be sorted by name.
  void add_directory(const std::string& dir_path, std::vector<CachedFile> files);
  /// Records one file (e.g. one a layer apply just wrote with known chunks).
  void set_file(const std::string& dir_path, CachedFile file);
  void add_tree(const util::Digest& id) { m_trees.insert(id); }
  bool has_tree(const util::Digest& id) const { return m_trees.count(id) != 0; }
  size_t directories() const { return m_dirs.size(); }

 private:
  std::unordered_map<std::string, std::vector<CachedFile>> m_dirs;
  std::unordered_set<util::Digest, util::DigestHash> m_trees;
};

}  // namespace mirage::scan

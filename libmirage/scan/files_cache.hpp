#pragma once
// The endpoint's files cache: for each path, the (size, mtime ns, ctime ns, inode) it
// had and the chunks it was cut into, so an unchanged file is not read again; and the
// tree ids of the last committed snapshot. It is written only after the server has
// committed a snapshot, so every chunk and tree it names is known to be stored.
//
// File format:
//   "MFC1"
//   count varint, then per file: path str, size varint, mtime svarint, ctime svarint,
//     inode varint, nchunks varint, (id 32 bytes, size varint)*
//   ntrees varint, then tree ids (32 bytes each)
//   xxh3-64 of all the above, u64 le
// A damaged or foreign file is ignored (the next scan reads everything).
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

class FilesCache {
 public:
  /// Loads the cache; a missing or damaged file gives an empty cache (and `damaged`).
  static FilesCache load(const std::filesystem::path& file, bool* damaged = nullptr);
  /// Writes durably (temp file, fsync, rename).
  void save(const std::filesystem::path& file) const;

  /// The chunks of `path` when its stamp is unchanged.
  const std::vector<tree::ChunkRef>* lookup(const std::string& path, const FileStamp& stamp) const;
  void add(const std::string& path, const FileStamp& stamp, std::vector<tree::ChunkRef> chunks);
  void add_tree(const util::Digest& id) { m_trees.insert(id); }
  bool has_tree(const util::Digest& id) const { return m_trees.count(id) != 0; }
  size_t size() const { return m_files.size(); }

 private:
  struct Item {
    FileStamp stamp;
    std::vector<tree::ChunkRef> chunks;
  };
  std::unordered_map<std::string, Item> m_files;
  std::unordered_set<util::Digest, util::DigestHash> m_trees;
};

}  // namespace mirage::scan

#pragma once
// The one writer of file contents: restores, layer applies and `mirage-assign render`
// all put a file's chunks on disk through it, so they agree on sparseness.
//
// A file whose entry has the sparse flag keeps its holes: each 4 KiB block that is all
// zeros is skipped rather than written (as rsync -S does), and finish() sets the
// length, so trailing zeros are a hole too. A file without the flag is written whole.
#include <cstdint>
#include <span>
#include <string>

#include "libmirage/tree/tree.hpp"

namespace mirage::materialize {

class ContentWriter {
 public:
  /// Writes the contents of `entry` (its size and sparse flag) to `fd`, which must be
  /// an empty regular file; `path` names it in errors.
  ContentWriter(int fd, const tree::Entry& entry, std::string path);
  /// Appends the next piece (a chunk) of the file. Throws Error naming the path.
  void write(std::span<const uint8_t> data);
  /// write() of the same piece as the last write(), which may skip looking at it again:
  /// for a sparse file a piece of zeros repeated (the chunks of a hole) is a hole.
  void write_again(std::span<const uint8_t> data);
  /// Sets the final length (entry.size); throws Error naming the path. The bytes
  /// written so far must not exceed it.
  void finish();
  uint64_t offset() const { return m_offset; }
  /// The next piece goes at `offset` (a placeholder is filled in any order: the bytes a
  /// read waits for first). Blocks are aligned to the file, so holes stay holes.
  void seek(uint64_t offset) { m_offset = offset; }

 private:
  int m_fd;
  uint64_t m_size;
  bool m_sparse;
  std::string m_path;
  uint64_t m_offset = 0;
  bool m_last_zero = false;  ///< the last write() was of zeros, all left a hole
};

}  // namespace mirage::materialize

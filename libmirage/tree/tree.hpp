#pragma once
// Tree objects: one per directory, canonical, stored as a chunk whose id is the
// SHA-256 of its encoding. An unchanged subtree encodes to the same bytes and so costs
// nothing; two snapshots diff by walking the subtrees whose ids differ.
//
// Encoding (all integers LEB128 varints unless noted; svarint is zigzag):
//   "MTR1"                      4-byte magic
//   count                       number of entries
//   entry*                      strictly increasing by name (bytewise)
// entry:
//   name      str               1..255 bytes, no '/', no NUL, not "." or ".."
//   kind      u8                1 file, 2 dir, 3 symlink, 4 char, 5 block, 6 fifo, 7 socket
//   mode      varint            permission bits with setuid/setgid/sticky (<= 07777)
//   uid, gid  varint
//   mtime     svarint           ns since the epoch
//   size      varint            file length (0 for others)
//   rdev      varint            device number (char/block), else 0
//   target    str               symlink target (<= 4095 bytes), else empty
//   nxattr    varint (<= 4096), then (name str 1..255, value str <= 65536)*, strictly increasing by name
//   nchunks   varint, then (id 32 raw bytes, size varint)*; files only, sizes sum to size
//   subtree   32 raw bytes      dirs only
//   group     str               hardlinks: root-relative path of the group's first member
//   flags     u8                bit 0: sparse (zero blocks are restored as holes)
// A str is varint length + bytes. No trailing bytes.
//
// A large directory (more than k_split_entries entries or k_split_bytes encoded) is
// split into pieces, each an MTR1 object of consecutive entries, and its id is that of
// an index object:
//   "MTX1"                      4-byte magic
//   count                       number of pieces, >= 2
//   piece*                      (id 32 raw bytes, entries varint >= 1, first name str),
//                               first names strictly increasing
// Cuts are content-defined: after an entry whose name hashes to a multiple of
// k_piece_target (at least k_piece_min entries in, or at k_piece_max_bytes), so adding,
// removing or changing one entry stores one new piece and a new index, not the whole
// directory.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "libmirage/util/digest.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::tree {

using util::Digest;

enum class Kind : uint8_t { file = 1, dir = 2, symlink = 3, chardev = 4, blockdev = 5, fifo = 6, socket = 7 };

std::string_view kind_name(Kind kind);
/// The S_IF* file type bits of `kind` (as st_mode carries them).
uint32_t type_bits(Kind kind);

struct ChunkRef {
  Digest id;
  uint64_t size = 0;
  bool operator==(const ChunkRef&) const = default;
};

struct Xattr {
  std::string name;
  std::string value;
  bool operator==(const Xattr&) const = default;
};

struct Entry {
  std::string name;
  Kind kind = Kind::file;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_ns = 0;
  uint64_t size = 0;
  uint64_t rdev = 0;
  std::string target;
  std::vector<Xattr> xattrs;
  std::vector<ChunkRef> chunks;
  Digest subtree;
  std::string link_group;
  bool sparse = false;

  bool operator==(const Entry&) const = default;
};

struct Tree {
  std::vector<Entry> entries;
  /// The entry named `name`, or nullptr (entries are sorted, so this is a binary search).
  const Entry* find(std::string_view name) const;
};

/// Sorts entries and xattrs into canonical order and encodes. Throws Error(usage) on an
/// invalid name or duplicate.
std::vector<uint8_t> encode(Tree tree);
/// As encode, sorting `tree` in place.
std::vector<uint8_t> encode_in_place(Tree& tree);
/// The entry count an MTR1 object claims, read without decoding it (for bounds checks);
/// Error(integrity) naming `what` when it is not one.
uint64_t entry_count(std::span<const uint8_t> data, const std::string& what);
/// Decodes and validates; throws Error(integrity) naming `what` on anything malformed,
/// including unsafe names ("..", "/" inside, NUL) and non-canonical order.
Tree decode(std::span<const uint8_t> data, const std::string& what);

/// The xattr a streaming restore's placeholder carries until it is filled
/// (materialize/stream.hpp): a file that has it holds a hole, not its bytes. Here
/// because the scanner leaves such a file out (a snapshot of zeros would be data loss).
inline constexpr const char* k_placeholder_xattr = "user.mirage.placeholder";

/// When a directory is split, and the average size of its pieces.
constexpr size_t k_split_entries = 8192;
constexpr size_t k_split_bytes = 16u << 20;
constexpr size_t k_piece_target = 2048;
constexpr size_t k_piece_min = 256;
constexpr size_t k_piece_max_bytes = 8u << 20;
/// The most chunks one file's entry lists (~35 bytes each: ~52 MB, under the 64 MiB an
/// object may hold, with room for the entry's name and xattrs): about 90 GiB of data at
/// the average chunk size, 366 GiB of holes. A larger file is left out by the scan, named.
constexpr size_t k_max_file_chunks = 1'500'000;

/// One object of a directory, with its id (SHA-256 of the bytes).
struct Object {
  Digest id;
  std::vector<uint8_t> data;
};

/// A directory's objects: `pieces` (empty when it fits in one object), then `top`, whose
/// id is the directory's subtree id (the one MTR1 object, or the MTX1 index).
struct DirObjects {
  std::vector<Object> pieces;
  Object top;
};

/// Encodes a directory as encode() does, split into pieces when it is large.
DirObjects encode_dir(Tree tree);
/// As encode_dir, sorting `tree` (entries, and each one's xattrs) in place and leaving it
/// with the caller, who may move out of it what it keeps (a scan: file names and chunks).
DirObjects encode_dir_in_place(Tree& tree);

/// One piece as an index names it.
struct Piece {
  Digest id;
  uint64_t entries = 0;
  std::string first;  ///< its first entry's name
};

/// True when `data` is an index object (a split directory), not an MTR1 tree.
bool is_index(std::span<const uint8_t> data);
/// Decodes and validates an index; throws Error(integrity) naming `what`.
std::vector<Piece> decode_index(std::span<const uint8_t> data, const std::string& what);
/// The directory an index names, from its decoded pieces in index order; throws
/// Error(integrity) naming `what` when a piece disagrees with the index (count, first
/// name, or order across pieces).
Tree join(const std::vector<Piece>& index, std::vector<Tree> pieces, const std::string& what);

/// At most this many entries in one piece (a cut is forced there); a server refuses a
/// newly committed MTR1 object holding more, so one object's decoded size is bounded.
constexpr size_t k_piece_max_entries = 65536;

/// Plain, verified bytes of the object `id` (the caller's store or server).
using Fetch = std::function<std::vector<uint8_t>(const Digest& id)>;
/// Calls `each` with every MTR1 object of directory `id` in order (the one object, or
/// each piece, checked against its index before the next is fetched), so a walk holds
/// one piece at a time however large the directory. `each` gets the object's id too, and
/// may take the piece's entries (it is not used after). `max_entries` (0: none) refuses,
/// as Error(integrity), an object holding more.
void for_each_piece(const Digest& id, const Fetch& fetch, const std::string& what,
                    const std::function<void(const Digest& object, Tree& piece)>& each, size_t max_entries = 0);
/// Walks everything directory `root` reaches, each directory once: `enter(id)` for each
/// directory (false: walked already, skipped with what is below it), then `object(id)`
/// for each object under it (a split directory's pieces, its files' chunks). A
/// directory that cannot be read goes to `unreadable` (which may throw), and the walk
/// goes on without what is below it; without `unreadable` the error is thrown.
void walk_reachable(const Digest& root, const Fetch& fetch, const std::function<bool(const Digest& dir)>& enter,
                    const std::function<void(const Digest& object)>& object,
                    const std::function<void(const Digest& dir, const Error& error)>& unreadable = {});
/// Reads directory `id`, joining its pieces when it is split; `pieces`, when given, gets
/// the pieces' ids. Errors are those of `fetch`, and Error(integrity) for bad objects.
Tree load(const Digest& id, const Fetch& fetch, const std::string& what, std::vector<Digest>* pieces = nullptr);

/// One entry alone (the snapshot's root directory), name may be empty.
std::vector<uint8_t> encode_entry(const Entry& entry);
Entry decode_entry(std::span<const uint8_t> data, const std::string& what);
/// The same from hex (how JSON carries a snapshot's or a layer's root entry); bad hex is
/// Error(integrity) naming `what`.
Entry decode_entry_hex(std::string_view hex, const std::string& what);

/// Root-relative absolute paths as snapshots, layers and plans key them ("/" is the root):
/// the path of `name` inside `dir`, the directory holding `path`, and its last component.
std::string child_path(const std::string& dir, const std::string& name);
std::string parent_path(const std::string& path);
std::string base_name(const std::string& path);

/// True for a name that may appear in a directory: 1..255 bytes, no '/', no NUL, not "." or "..".
bool valid_name(std::string_view name);

/// Why `entry` cannot be stored in a tree object (a name, symlink target, xattr count,
/// xattr name or value, or hardlink group path beyond the limits decode() enforces), or
/// nullopt when it can. Lets a scan leave out one entry instead of failing.
std::optional<std::string> entry_problem(const Entry& entry);

/// Splits an absolute or relative snapshot path into validated components; "/" and ""
/// give none. Throws Error(usage) naming the path on "..", NUL, or an empty component
/// other than doubled slashes.
std::vector<std::string> split_path(std::string_view path);

}  // namespace mirage::tree

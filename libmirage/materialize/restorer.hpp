#pragma once
// Materializing snapshot entries onto disk, safely.
//
// Every path is created relative to an open directory fd: directories are opened with
// O_NOFOLLOW (a symlink where a directory is expected is an error, never followed),
// other entries are made under a temporary name and renamed over the final one (which
// replaces a symlink rather than writing through it). Nothing is written outside the
// target. Each chunk is verified against its id before it is written; a mismatch
// throws Error(integrity) naming the file, and its temporary file is removed.
//
// Work runs in walk order as a list of jobs (write a file, make a link, finish a
// directory's metadata), flushed in batches so chunk fetches are large and only the
// directories with pending jobs hold an fd. Metadata order per entry: content, owner,
// mode (after chown, which clears setuid), xattrs (capabilities after chown), times;
// a directory's metadata is applied after its children.
//
// Temporary names start with ".mirage-restore."; those a killed restore left behind in
// a directory are removed when a restore next writes into it. A fetch that fails (a
// pack missing or damaged on the server) is rethrown naming the files it affects.
//
// Directories are made 0700 and get their own mode, owner and times last, after their
// contents (a read-only directory would refuse them; its mtime would move).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/tree/tree.hpp"

namespace mirage::materialize {

using util::Digest;

/// Where snapshot objects come from (the client implements it over the protocol).
class ObjectSource {
 public:
  virtual ~ObjectSource() = default;
  /// The directory `id`, decoded and verified (its pieces fetched and joined when it is
  /// split). Throws Error(integrity) when the source lacks it or sends something else.
  tree::Tree tree(const Digest& id);
  /// The same for many directories at once: one records() call for the objects, and
  /// one more for the pieces of those that are split.
  std::unordered_map<Digest, tree::Tree, util::DigestHash> trees(std::span<const Digest> ids);
  /// Back-to-back records (store/record.hpp) of `ids`, in any order; unverified.
  virtual std::vector<uint8_t> records(std::span<const Digest> ids) = 0;
  /// The same records in one or more buffers, as they came: a source that fetches over
  /// several connections at once does not join the replies (that copy, and the fresh
  /// pages it touched, were a tenth of a full restore's CPU).
  virtual std::vector<std::vector<uint8_t>> record_parts(std::span<const Digest> ids) {
    std::vector<std::vector<uint8_t>> parts;
    parts.push_back(records(ids));
    return parts;
  }
  /// Deltas: `pairs` holds (wanted id, base id) back to back; the reply has, per pair,
  /// the wanted id (32 bytes), its size (u32 le), the frame length (u32 le, 0xffffffff
  /// when no delta could be made) and a zstd frame made with the base as prefix
  /// (util::zstd_compress_delta). Empty when the source cannot make deltas.
  virtual std::vector<uint8_t> deltas(std::span<const Digest> pairs) {
    (void)pairs;
    return {};
  }
  /// Bytes received over the wire so far (0 when not counted).
  virtual uint64_t bytes_received() const { return 0; }
};

struct RestoreStats {
  uint64_t files = 0, dirs = 0, symlinks = 0, others = 0, hardlinks = 0;
  uint64_t kept = 0;  ///< entries already at the target and left as they were (Overwrite)
  uint64_t placeholders = 0;  ///< files made as placeholders, to be filled later (stream.hpp)
  uint64_t bytes = 0;
  uint64_t wire_bytes = 0;  ///< received from the server (set by the protocol client)
  std::vector<std::string> warnings;
};
void to_json(nlohmann::json& j, const RestoreStats& s);

/// What a restore does with an entry (not a directory) that exists at the target:
/// `always` replaces it; `if_changed` leaves a regular file whose size and mtime equal the
/// snapshot's (rsync's quick check; its owner, mode, xattrs and times are still set) and
/// replaces anything else; `never` leaves whatever is there, and an existing directory's
/// metadata too. Directories are always merged into.
enum class Overwrite { always, if_changed, never };
/// "always", "if-changed", "never"; nullopt for another name.
std::optional<Overwrite> overwrite_from_name(std::string_view name);

struct RestoreOptions {
  std::filesystem::path to;        ///< created (as mkdir -p does) when missing
  std::vector<std::string> paths;  ///< snapshot paths; "/" is everything
  Digest tree;                     ///< the snapshot's root tree
  tree::Entry root;                ///< the snapshot's root directory entry
  std::function<void(uint64_t bytes, uint64_t files)> progress;  ///< written so far, after each batch
  Overwrite overwrite = Overwrite::always;
  /// Streaming (stream.hpp): a regular file with content for which `placeholder` returns
  /// true is made as a placeholder (its final size as a hole, its final metadata, the
  /// placeholder xattr) instead of being written, and handed to `on_placeholder` with
  /// its parent's fd and its name once it is in place. A placeholder at the target is
  /// never "unchanged" to Overwrite::if_changed. A hardlink group is one inode: when
  /// `placeholder` is false for any of its names, the group is written whole before the
  /// restore returns (a first name made a placeholder is filled in place when a later
  /// one needs it whole), never a placeholder behind that name; a group's placeholder is
  /// handed to `on_placeholder` once the walk is over (until then a read is not held).
  std::function<bool(const std::string& path, const tree::Entry&)> placeholder;
  std::function<void(int dirfd, const std::string& name, const std::string& path, const tree::Entry&)> on_placeholder;
};

/// Restores each path to `to/<path>` (the whole snapshot into `to` for "/"). The
/// directories on the way to a path that the restore creates get their snapshot metadata
/// (after what is restored in them); those that existed keep theirs.
/// Throws Error(not_found) for a path the snapshot lacks, Error(integrity) for corrupt
/// data, Error(precondition) for a symlink where a directory is expected. A restore that
/// throws leaves no directory it made empty (target included): what stays is files
/// written whole before the failure and the directories holding them.
RestoreStats restore(const RestoreOptions& options, ObjectSource& source);

/// The file bytes a restore of `paths` writes (a hardlink group once), for a progress
/// total: reads every tree below them, a level at a time. Throws Error(not_found) for a
/// path the snapshot lacks.
uint64_t bytes_under(ObjectSource& source, const tree::Entry& root, const std::vector<std::string>& paths);

/// Looks up a snapshot path, reading only the trees on the way. nullopt when absent.
std::optional<tree::Entry> lookup(ObjectSource& source, const tree::Entry& root, std::string_view path);

}  // namespace mirage::materialize

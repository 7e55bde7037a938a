#pragma once
// Browsing snapshots before restoring: list a directory, find paths across snapshots,
// diff two snapshots, dump a file or a subtree as a tar or zip stream. Everything reads
// through materialize::ObjectSource, the same reads (and so the same access checks) as a
// restore; nothing is written to disk.
//
// Reads are batched: a walk fetches the trees of one level (or of one directory's
// subdirectories) in one request, a tree reached twice (shared by snapshots or paths) is
// fetched once, and diff descends only where two subtree ids differ. Paths never follow
// symlinks: a symlink is an entry like any other, and one in the middle of a path is
// refused naming it.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/archive.hpp"

namespace mirage::browse {

using materialize::ObjectSource;

/// An entry and its snapshot path ("/etc/hosts"); the entry is the walk's, valid during
/// the call that gets it (copy it to keep it).
struct Item {
  std::string path;
  const tree::Entry& entry;
};
/// One JSON object per entry: path, name, type (file, dir, symlink, char, block, fifo,
/// socket), mode (permission bits, an integer), permissions ("drwxr-xr-x"), uid, gid,
/// size, mtime (RFC 3339), mtime_ns, and when set: target, rdev, link_group, xattrs (names).
void to_json(nlohmann::json& j, const Item& item);
/// Appends json(item).dump() (invalid UTF-8 replaced) and a newline to `out`, byte for
/// byte the same, without building the JSON object: ls --output json of a large
/// directory spent most of its time there.
void append_json_line(std::string& out, const Item& item);
/// ls -l's mode column: "-rwsr-xr-x", "drwxrwxrwt", "lrwxrwxrwx".
std::string permissions(const tree::Entry& entry);

/// The entry at `path` ("/" and "" are the root), reading only the trees on the way.
/// Throws Error(usage) for ".." or NUL in it, Error(not_found) when the snapshot lacks
/// it or a component before the last is not a directory (a symlink there is named with
/// its target: it is not followed).
tree::Entry resolve(ObjectSource& source, const tree::Entry& root, std::string_view path);

/// Calls `each` with what is at `path`: a directory's entries in name order (with
/// `recursive`, every entry below it, depth first, each directory before its
/// contents), or the entry itself when it is not a directory. Errors as resolve().
void list(ObjectSource& source, const tree::Entry& root, std::string_view path, bool recursive,
          const std::function<void(const Item&)>& each);

/// A snapshot as find and diff take it.
struct SnapshotRef {
  std::string id;
  int64_t time_ns = 0;
  tree::Entry root;
};

struct FindOptions {
  /// Globs (fnmatch): one without '/' matches an entry's name, one with '/' its whole
  /// path ('*' not crossing '/'; a leading '/' is implied).
  std::vector<std::string> patterns;
  std::optional<int64_t> newer_ns;  ///< only entries with mtime at or after
  std::optional<int64_t> older_ns;  ///< only entries with mtime at or before
};

/// One version of a path (its entry as stored) and the snapshots that hold it.
struct Found {
  std::string path;
  tree::Entry entry;
  std::vector<std::string> snapshots;  ///< in the order given
  int64_t first_ns = 0, last_ns = 0;   ///< times of the first and last of them
};
/// The Item fields, then snapshots, first_seen and last_seen (RFC 3339).
void to_json(nlohmann::json& j, const Found& f);

/// Entries matching any pattern in any of `snapshots`, by path, then version by
/// version in the order they first appear. Each distinct tree is fetched and matched
/// once, however many snapshots hold it. Throws Error(usage) for an empty pattern list.
std::vector<Found> find(ObjectSource& source, const std::vector<SnapshotRef>& snapshots, const FindOptions& options);

enum class Change { added, removed, modified, metadata, type };
std::string_view change_name(Change change);

/// One difference: `before` is absent for added entries, `after` for removed ones.
struct DiffItem {
  std::string path;
  Change change = Change::modified;
  std::optional<tree::Entry> before, after;
};
/// {path, change, type, size_before, size_after} (sizes only on the side present; type
/// is the entry's kind after, or before when removed).
void to_json(nlohmann::json& j, const DiffItem& d);

struct DiffSummary {
  uint64_t added = 0, removed = 0, modified = 0, metadata = 0, type = 0;  ///< entries
  uint64_t added_bytes = 0;    ///< file bytes of added entries (a type change counts both ways)
  uint64_t removed_bytes = 0;  ///< file bytes of removed entries
  uint64_t modified_bytes_before = 0, modified_bytes_after = 0;
  uint64_t trees_read = 0;  ///< directory objects read (what the walk cost)
};
void to_json(nlohmann::json& j, const DiffSummary& s);

struct DiffResult {
  std::vector<DiffItem> changes;  ///< by path
  DiffSummary summary;
};

/// Differences from `before` to `after` at `path` (both roots; "/" for all). Entries
/// under an added or removed directory are listed too. A file is modified when its
/// content (chunks), a symlink when its target, a device when its number changes;
/// metadata when only mode, owner, mtime, xattrs or hardlink group do (a directory's
/// mtime alone counts only when its contents are the same). Subtrees with equal ids
/// are skipped unread. A path neither snapshot has is Error(not_found).
DiffResult diff(ObjectSource& source, const tree::Entry& before, const tree::Entry& after, std::string_view path);

struct DumpStats {
  uint64_t entries = 0, bytes = 0;
  std::vector<std::string> skipped;  ///< sockets, which an archive cannot hold
};

/// Writes the file `entry` (a regular file at `path`) to `fd`, each chunk verified.
/// Throws Error(usage) for anything but a file, Error(integrity) for bad data.
DumpStats dump_file(ObjectSource& source, const tree::Entry& entry, const std::string& path, int fd);
/// Writes the entry at `path` (a directory: with everything below it) as an archive to
/// `fd`: member names are relative to the parent of `path` (for "/", to the root, which
/// gets no member). Modes, owners (numeric), ns mtimes, symlinks, devices, fifos,
/// xattrs; in tar, hardlinks as links to the group's first member in the archive (zip
/// has none: each member is written whole); sparse files are written whole. Errors as dump_file.
DumpStats dump_archive(ObjectSource& source, const tree::Entry& entry, const std::string& path, int fd,
                       util::ArchiveFormat format);

}  // namespace mirage::browse

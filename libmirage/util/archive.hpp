#pragma once
// The one wrapper around libarchive: writes a tar (POSIX pax) or zip stream to a file
// descriptor. Pax keeps what ustar cannot: ns mtimes, long names, large ids and sizes,
// and xattrs (SCHILY.xattr, which GNU tar --xattrs and Python's tarfile read).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mirage::util {

enum class ArchiveFormat { tar, zip };

/// One archive member's header. `type` follows st_mode's S_IF* bits (S_IFREG, S_IFDIR,
/// S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO); a non-empty `hardlink` makes it a link to that
/// earlier member's path instead (no data).
struct ArchiveMember {
  std::string path;
  uint32_t type = 0;
  uint32_t mode = 0;  ///< permission bits with setuid/setgid/sticky
  uint32_t uid = 0, gid = 0;
  int64_t mtime_ns = 0;
  uint64_t size = 0;  ///< bytes of data that follow (files)
  uint64_t rdev = 0;
  std::string symlink;
  std::string hardlink;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

/// Writes members to `fd` (which it does not close). Errors throw Error(failed) naming
/// `what` and libarchive's message (a closed pipe: Error(failed) too).
class ArchiveWriter {
 public:
  ArchiveWriter(int fd, ArchiveFormat format, std::string what);
  ~ArchiveWriter();
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;
  /// Whether the format has hardlinks (tar); zip has not, so a caller writes each
  /// member of a group whole.
  bool has_hardlinks() const;
  /// Starts a member; a file's data follows through data(), member.size bytes in all.
  void add(const ArchiveMember& member);
  void data(std::span<const uint8_t> bytes);
  /// Writes the trailer; the destructor of an unfinished writer writes nothing more.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> m_state;
  ArchiveFormat m_format;
};

}  // namespace mirage::util

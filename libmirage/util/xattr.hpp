#pragma once
// Extended attributes of an entry named relative to a directory fd, without following
// a final symlink (through the /proc/self/fd/N/NAME path, which pins the directory).
// POSIX ACLs and file capabilities are xattrs (system.posix_acl_*, security.capability).
#include <string>
#include <utility>
#include <vector>

namespace mirage::util {

/// All xattrs of dirfd/name, sorted by name. Filesystems without xattr support give none.
std::vector<std::pair<std::string, std::string>> list_xattrs(int dirfd, const std::string& name);
/// As above for a path as given (no symlink followed at its end); a bare name is
/// looked up in the working directory, the cheapest lookup there is.
std::vector<std::pair<std::string, std::string>> list_xattrs_at_path(const std::string& path, const std::string& display);

/// Makes `dirfd` the working directory for its lifetime and restores the previous one
/// after. For single-threaded walks only: the working directory is process-wide.
class ScopedChdir {
 public:
  ScopedChdir();
  ScopedChdir(const ScopedChdir&) = delete;
  ScopedChdir& operator=(const ScopedChdir&) = delete;
  ~ScopedChdir();
  void enter(int dirfd);

 private:
  int m_saved;
};
/// Sets one xattr on dirfd/name (not following a symlink); throws naming `display`.
void set_xattr(int dirfd, const std::string& name, const std::string& key, const std::string& value,
               const std::string& display);
/// "/proc/self/fd/<dirfd>/<name>".
std::string fd_path(int dirfd, const std::string& name);

}  // namespace mirage::util

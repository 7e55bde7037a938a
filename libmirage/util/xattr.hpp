#pragma once
// Extended attributes of an entry named relative to a directory fd, without following
// a final symlink and without changing the working directory (it is process-wide, and
// the scanner's walk runs beside upload threads and, in the server, other requests).
// POSIX ACLs and file capabilities are xattrs (system.posix_acl_*, security.capability).
//
// How an entry is reached, cheapest first (a bare name lookup in a directory fd costs
// one component; a /proc/self/fd/N/NAME path costs four more and a magic link):
//  1. listxattrat/getxattrat(dirfd, name, AT_SYMLINK_NOFOLLOW) (Linux 6.13 and later);
//  2. a regular file or directory: openat(O_RDONLY|O_NOFOLLOW|O_NONBLOCK), then
//     flistxattr/fgetxattr (an open does not touch atime);
//  3. anything else (symlinks, devices, fifos, sockets, an entry the caller may not
//     open): llistxattr/lgetxattr on /proc/self/fd/<dirfd>/<name>.
#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace mirage::util {

/// All xattrs of dirfd/name, sorted by name. `mode` is the entry's lstat st_mode when
/// known (0: unknown, which skips way 2). Filesystems without xattr support give none.
/// Throws Error naming `name` (not_found when it has vanished).
std::vector<std::pair<std::string, std::string>> list_xattrs(int dirfd, const std::string& name, mode_t mode = 0);

/// Tests only: with `off`, way 1 is not used (to reach ways 2 and 3 on a kernel that
/// has it); with !off, it is probed again.
void disable_xattrat_for_tests(bool off);

/// Sets one xattr on dirfd/name (not following a symlink); throws naming `display`.
void set_xattr(int dirfd, const std::string& name, const std::string& key, const std::string& value,
               const std::string& display);
/// "/proc/self/fd/<dirfd>/<name>".
std::string fd_path(int dirfd, const std::string& name);

}  // namespace mirage::util

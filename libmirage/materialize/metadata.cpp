#include "libmirage/materialize/metadata.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/xattr.hpp"

namespace mirage::materialize {

timespec timespec_of(int64_t ns) {
  timespec t;
  t.tv_sec = static_cast<time_t>(ns / 1000000000);
  t.tv_nsec = static_cast<long>(ns % 1000000000);
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    t.tv_sec -= 1;
  }
  return t;
}

bool running_as_root() {
  static const bool root = ::geteuid() == 0;
  return root;
}

namespace {

/// Sets each xattr with `set` (which throws naming the xattr); without root one that
/// cannot be set is a warning.
void set_xattrs(const tree::Entry& e, const Warn& warn, const std::function<void(const tree::Xattr&)>& set) {
  for (const auto& x : e.xattrs) {
    try {
      set(x);
    } catch (const Error& err) {
      if (running_as_root()) throw;
      warn(err.what());
    }
  }
}

/// The /proc name of an open fd: the inode it holds, whatever its name is now (needs
/// /proc mounted).
std::string proc_name(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

void set_metadata(int dirfd, const std::string& name, const tree::Entry& e, const std::string& path, const Warn& warn,
                  bool made_here) {
  // Through a handle on what the name is now, never by the name again: whoever may write
  // the directory (a user's home, /tmp) can rename a symlink over it between two calls,
  // and a chmod by name follows it, so root would change the mode of the file it points
  // to (/etc/shadow). The handle also shows what is there: not the kind made or planned
  // is someone else's doing, and is refused.
  util::Fd fd(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("stat " + path);
  // What this process just made is its own and has one name: another's node linked in
  // under the name (where hardlinks are not protected) is not.
  bool replaced = (st.st_mode & S_IFMT) != tree::type_bits(e.kind) ||
                  (made_here && e.kind != tree::Kind::dir && (st.st_nlink != 1 || st.st_uid != ::geteuid()));
  if (replaced)
    throw Error(ErrorKind::precondition, "set metadata of " + path + ": it is no longer the " +
                                             std::string(tree::kind_name(e.kind)) +
                                             " made (replaced while it was written: does another user write this directory?)");
  if (running_as_root() && ::fchownat(fd.get(), "", e.uid, e.gid, AT_EMPTY_PATH) != 0) throw_errno("chown " + path);
  timespec times[2] = {timespec_of(e.mtime_ns), timespec_of(e.mtime_ns)};
  if (e.kind == tree::Kind::symlink) {  // no mode; its xattrs and times by name, never followed
    set_xattrs(e, warn, [&](const tree::Xattr& x) { util::set_xattr(dirfd, name, x.name, x.value, path); });
    if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("set times of " + path);
    return;
  }
  // A node (a fifo, a device) cannot be opened for its metadata without acting as one:
  // the O_PATH handle's /proc name reaches the very inode checked above.
  std::string self = proc_name(fd.get());
  if (::chmod(self.c_str(), e.mode) != 0) {
    if (errno == ENOENT) throw Error(ErrorKind::failed, "chmod " + path + ": /proc is not mounted (needed to set modes safely)");
    throw_errno("chmod " + path);
  }
  set_xattrs(e, warn, [&](const tree::Xattr& x) {
    if (::setxattr(self.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0) != 0)
      throw_errno("set xattr " + x.name + " on " + path);
  });
  if (::utimensat(AT_FDCWD, self.c_str(), times, 0) != 0) throw_errno("set times of " + path);
}

void set_metadata_fd(int fd, const tree::Entry& e, const std::string& path, const Warn& warn) {
  if (running_as_root() && ::fchown(fd, e.uid, e.gid) != 0) throw_errno("chown " + path);
  if (::fchmod(fd, e.mode) != 0) throw_errno("chmod " + path);
  // A file's xattrs through the fd's /proc name, never the file's name: another user
  // could rename a file of theirs over it meanwhile and get its capabilities. (Not
  // fsetxattr: an O_WRONLY fd may not take security.* on every filesystem.)
  std::string self = proc_name(fd);
  set_xattrs(e, warn, [&](const tree::Xattr& x) {
    int rc = e.kind == tree::Kind::dir ? ::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0)
                                       : ::setxattr(self.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0);
    if (rc != 0) throw_errno("set xattr " + x.name + " on " + path);
  });
  timespec times[2] = {timespec_of(e.mtime_ns), timespec_of(e.mtime_ns)};
  if (::futimens(fd, times) != 0) throw_errno("set times of " + path);
}

void make_node(int dirfd, const std::string& name, const tree::Entry& e, const std::string& path) {
  int rc = 0;
  switch (e.kind) {
    case tree::Kind::symlink: rc = ::symlinkat(e.target.c_str(), dirfd, name.c_str()); break;
    case tree::Kind::chardev: rc = ::mknodat(dirfd, name.c_str(), S_IFCHR | 0600, static_cast<dev_t>(e.rdev)); break;
    case tree::Kind::blockdev: rc = ::mknodat(dirfd, name.c_str(), S_IFBLK | 0600, static_cast<dev_t>(e.rdev)); break;
    case tree::Kind::fifo: rc = ::mknodat(dirfd, name.c_str(), S_IFIFO | 0600, 0); break;
    case tree::Kind::socket: rc = ::mknodat(dirfd, name.c_str(), S_IFSOCK | 0600, 0); break;
    default: throw Error(ErrorKind::failed, "create " + path + ": not a symlink or special file");
  }
  if (rc != 0) throw_errno("create " + path);
}

}  // namespace mirage::materialize

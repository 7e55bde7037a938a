#include "libmirage/materialize/metadata.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "libmirage/util/error.hpp"
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

void set_xattrs(int fd, int dirfd, const std::string& name, const tree::Entry& e, const std::string& path,
                const Warn& warn) {
  for (const auto& x : e.xattrs) {
    try {
      if (fd >= 0) {
        if (::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0) != 0)
          throw_errno("set xattr " + x.name + " on " + path);
      } else {
        util::set_xattr(dirfd, name, x.name, x.value, path);
      }
    } catch (const Error& err) {
      if (running_as_root()) throw;
      warn(err.what());
    }
  }
}

}  // namespace

void set_metadata(int dirfd, const std::string& name, const tree::Entry& e, const std::string& path, const Warn& warn) {
  bool is_link = e.kind == tree::Kind::symlink;
  if (running_as_root() && ::fchownat(dirfd, name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0)
    throw_errno("chown " + path);
  if (!is_link && ::fchmodat(dirfd, name.c_str(), e.mode, 0) != 0) throw_errno("chmod " + path);
  set_xattrs(-1, dirfd, name, e, path, warn);
  timespec times[2] = {timespec_of(e.mtime_ns), timespec_of(e.mtime_ns)};
  if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("set times of " + path);
}

void set_metadata_fd(int fd, int dirfd, const std::string& name, const tree::Entry& e, const std::string& path,
                     const Warn& warn) {
  if (running_as_root() && ::fchown(fd, e.uid, e.gid) != 0) throw_errno("chown " + path);
  if (::fchmod(fd, e.mode) != 0) throw_errno("chmod " + path);
  if (e.kind == tree::Kind::dir)
    set_xattrs(fd, dirfd, name, e, path, warn);
  else
    set_xattrs(-1, dirfd, name, e, path, warn);  // by name: an O_WRONLY fd may not take security.* on all fs
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

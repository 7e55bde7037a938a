#include "libmirage/util/xattr.hpp"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "libmirage/util/error.hpp"

namespace mirage::util {

std::string fd_path(int dirfd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
}

std::vector<std::pair<std::string, std::string>> list_xattrs(int dirfd, const std::string& name) {
  return list_xattrs_at_path(fd_path(dirfd, name), name);
}

ScopedChdir::ScopedChdir() : m_saved(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
  if (m_saved < 0) throw_errno("open the working directory");
}

ScopedChdir::~ScopedChdir() {
  if (::fchdir(m_saved) != 0) {
    // Nothing sensible is left to do in a destructor; the fd is still closed.
  }
  ::close(m_saved);
}

void ScopedChdir::enter(int dirfd) {
  if (::fchdir(dirfd) != 0) throw_errno("enter directory");
}

std::vector<std::pair<std::string, std::string>> list_xattrs_at_path(const std::string& path, const std::string& name) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string names;
  for (;;) {
    ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP || errno == ENOSYS) return out;
      throw_errno("list xattrs of " + name);
    }
    if (n == 0) return out;
    names.resize(static_cast<size_t>(n));
    n = ::llistxattr(path.c_str(), names.data(), names.size());
    if (n < 0 && errno == ERANGE) continue;
    if (n < 0) throw_errno("list xattrs of " + name);
    names.resize(static_cast<size_t>(n));
    break;
  }
  for (size_t pos = 0; pos < names.size();) {
    size_t end = names.find('\0', pos);
    if (end == std::string::npos) end = names.size();
    std::string key = names.substr(pos, end - pos);
    pos = end + 1;
    if (key.empty()) continue;
    std::string value;
    for (;;) {
      ssize_t n = ::lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) break;
        throw_errno("read xattr " + key + " of " + name);
      }
      value.resize(static_cast<size_t>(n));
      n = ::lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
      if (n < 0 && errno == ERANGE) continue;
      if (n < 0) throw_errno("read xattr " + key + " of " + name);
      value.resize(static_cast<size_t>(n));
      out.emplace_back(std::move(key), std::move(value));
      break;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void set_xattr(int dirfd, const std::string& name, const std::string& key, const std::string& value,
               const std::string& display) {
  std::string path = fd_path(dirfd, name);
  if (::lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0) != 0)
    throw_errno("set xattr " + key + " on " + display);
}

}  // namespace mirage::util

#include "libmirage/util/xattr.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>

#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::util {

namespace {

// The *xattrat system calls (Linux 6.13); one number on every architecture. Older C
// library headers lack them.
#ifndef SYS_getxattrat
constexpr long k_sys_getxattrat = 464;
#else
constexpr long k_sys_getxattrat = SYS_getxattrat;
#endif
#ifndef SYS_listxattrat
constexpr long k_sys_listxattrat = 465;
#else
constexpr long k_sys_listxattrat = SYS_listxattrat;
#endif

struct XattrArgs {  // struct xattr_args of <linux/xattr.h>
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/// Whether the kernel has the *xattrat calls: unknown until the first call says.
std::atomic<int> g_xattrat{-1};

/// One way of reaching the entry: list(buf, size) and get(key, buf, size) as the
/// l*xattr calls are (a length, or -1 with errno).
template <class List, class Get>
std::vector<std::pair<std::string, std::string>> read_all(const std::string& name, List list, Get get) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string names;
  for (;;) {
    ssize_t n = list(nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP || errno == ENOSYS) return out;
      throw_errno("list xattrs of " + name);
    }
    if (n == 0) return out;
    names.resize(static_cast<size_t>(n));
    n = list(names.data(), names.size());
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
      ssize_t n = get(key.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) break;
        throw_errno("read xattr " + key + " of " + name);
      }
      value.resize(static_cast<size_t>(n));
      n = get(key.c_str(), value.data(), value.size());
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

ssize_t listxattrat(int dirfd, const char* name, char* buf, size_t size) {
  return ::syscall(k_sys_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, buf, size);
}

ssize_t getxattrat(int dirfd, const char* name, const char* key, void* buf, size_t size) {
  XattrArgs args{reinterpret_cast<uintptr_t>(buf), static_cast<uint32_t>(size), 0};
  return ::syscall(k_sys_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, key, &args, sizeof args);
}

/// True when the kernel has the *xattrat calls (probed once: ENOSYS, or EPERM from a
/// seccomp filter that does not know them, means no).
bool have_xattrat(int dirfd, const std::string& name) {
  int known = g_xattrat.load(std::memory_order_relaxed);
  if (known >= 0) return known == 1;
  errno = 0;
  bool have = listxattrat(dirfd, name.c_str(), nullptr, 0) >= 0 || (errno != ENOSYS && errno != EPERM);
  g_xattrat.store(have ? 1 : 0, std::memory_order_relaxed);
  return have;
}

}  // namespace

void disable_xattrat_for_tests(bool off) { g_xattrat.store(off ? 0 : -1); }

std::string fd_path(int dirfd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
}

std::vector<std::pair<std::string, std::string>> list_xattrs(int dirfd, const std::string& name, mode_t mode) {
  if (have_xattrat(dirfd, name)) {
    const char* n = name.c_str();
    return read_all(
        name, [&](char* buf, size_t size) { return listxattrat(dirfd, n, buf, size); },
        [&](const char* key, void* buf, size_t size) { return getxattrat(dirfd, n, key, buf, size); });
  }
  if (S_ISREG(mode) || S_ISDIR(mode)) {
    Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (fd.get() >= 0) {
      int f = fd.get();
      return read_all(
          name, [&](char* buf, size_t size) { return ::flistxattr(f, buf, size); },
          [&](const char* key, void* buf, size_t size) { return ::fgetxattr(f, key, buf, size); });
    }
    if (errno == ENOENT) throw_errno("list xattrs of " + name);
    // Not ours to open (EACCES), or it changed kind since its lstat: by path.
  }
  std::string path = fd_path(dirfd, name);
  const char* p = path.c_str();
  return read_all(
      name, [&](char* buf, size_t size) { return ::llistxattr(p, buf, size); },
      [&](const char* key, void* buf, size_t size) { return ::lgetxattr(p, key, buf, size); });
}

void set_xattr(int dirfd, const std::string& name, const std::string& key, const std::string& value,
               const std::string& display) {
  std::string path = fd_path(dirfd, name);
  if (::lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0) != 0)
    throw_errno("set xattr " + key + " on " + display);
}

}  // namespace mirage::util

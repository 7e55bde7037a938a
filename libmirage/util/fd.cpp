#include "libmirage/util/fd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::util {

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = other.release();
  }
  return *this;
}

Fd::~Fd() {
  if (m_fd >= 0) ::close(m_fd);
}

Fd open_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("open directory " + path);
  return Fd(fd);
}

std::vector<std::string> dir_names(int dirfd, const std::string& display) {
  // getdents64 on the descriptor itself: no dup, no DIR and its buffer, no rewind call
  // beyond the lseek (a walk lists every directory once; these were four syscalls each).
  if (::lseek(dirfd, 0, SEEK_SET) < 0) throw_errno("read directory " + display);
  std::vector<std::string> names;
  alignas(struct dirent64) char buf[32768];
  for (;;) {
    ssize_t n = ::getdents64(dirfd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read directory " + display);
    if (n == 0) return names;
    for (ssize_t at = 0; at < n;) {
      const auto* de = reinterpret_cast<const struct dirent64*>(buf + at);
      at += de->d_reclen;
      std::string_view name(de->d_name);
      if (name != "." && name != "..") names.emplace_back(name);
    }
  }
}

Fd open_dir_at(int dirfd, const std::string& name, const std::string& display) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR) {
      struct stat st;
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        throw Error(ErrorKind::precondition, display + ": is a symlink where a directory was expected; refusing to follow it");
      throw Error(ErrorKind::precondition, display + ": not a directory");
    }
    throw_errno("open directory " + display);
  }
  return Fd(fd);
}

std::string read_file(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("read " + path.string());
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + path.string());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void write_all(int fd, std::span<const uint8_t> data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(ErrorKind::failed, "write " + what);
    }
    data = data.subspan(static_cast<size_t>(n));
  }
}

void pwrite_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(ErrorKind::failed, "write " + what);
    }
    data = data.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
}

size_t read_full(int fd, std::span<uint8_t> data, const std::string& what) {
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(ErrorKind::failed, "read " + what);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

AtomicFile::AtomicFile(std::filesystem::path path, mode_t mode) : m_path(std::move(path)) {
  m_tmp = m_path;
  m_tmp += ".tmp-" + random_hex(6);
  m_fd = Fd(::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!m_fd) throw_errno("create " + m_tmp.string());
}

AtomicFile::~AtomicFile() {
  if (!m_committed) ::unlink(m_tmp.c_str());
}

void AtomicFile::write(std::span<const uint8_t> data) { write_all(m_fd.get(), data, m_tmp.string()); }

void AtomicFile::commit() {
  if (::fsync(m_fd.get()) != 0) throw_errno("fsync " + m_tmp.string());
  m_fd = Fd();
  if (::rename(m_tmp.c_str(), m_path.c_str()) != 0) throw_errno("rename into " + m_path.string());
  m_committed = true;
  fsync_dir(m_path.parent_path().empty() ? "." : m_path.parent_path());
}

void fsync_dir(const std::filesystem::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open directory " + dir.string());
  if (::fsync(fd.get()) != 0 && errno != EINVAL) throw_errno("fsync directory " + dir.string());
}

void make_dirs(const std::filesystem::path& dir, mode_t mode) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return;
  if (dir.has_parent_path() && dir.parent_path() != dir) make_dirs(dir.parent_path(), mode);
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    ErrorKind kind = errno == EACCES || errno == EPERM || errno == EROFS ? ErrorKind::permission
                     : errno == ENOENT                                   ? ErrorKind::not_found
                                                                         : ErrorKind::failed;
    throw_errno(kind, "create directory " + dir.string());
  }
  if (!std::filesystem::is_directory(dir, ec))
    throw Error(ErrorKind::not_found, "create directory " + dir.string() + ": a dangling symlink or not a directory");
}

PidLock::PidLock(const std::filesystem::path& file, const std::function<std::string(const std::string& holder)>& busy) {
  m_fd = Fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!m_fd) throw_errno("open " + file.string());
  if (::flock(m_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw_errno("lock " + file.string());
    char pid[32] = {};
    ssize_t n = ::pread(m_fd.get(), pid, sizeof pid - 1, 0);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw Error(ErrorKind::unavailable, busy(holder), "busy");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(m_fd.get(), 0) == 0) (void)!::pwrite(m_fd.get(), pid.data(), pid.size(), 0);
}

}  // namespace mirage::util

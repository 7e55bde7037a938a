#pragma once
// File descriptors and durable writes. Every path below a root is opened relative to a
// directory fd with O_NOFOLLOW, so nothing is ever written through a symlink.
#include <sys/stat.h>

#include <cstdint>

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace mirage::util {

/// An owned file descriptor; -1 when empty. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : m_fd(fd) {}
  Fd(Fd&& other) noexcept : m_fd(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();

  int get() const { return m_fd; }
  explicit operator bool() const { return m_fd >= 0; }
  int release() {
    int fd = m_fd;
    m_fd = -1;
    return fd;
  }

 private:
  int m_fd = -1;
};

/// Opens a directory (following symlinks only in `path` itself when `follow` is true).
Fd open_dir(const std::string& path);
/// Opens `name` inside `dirfd` as a directory without following a symlink; throws
/// Error(precondition) naming `display` when it is a symlink or not a directory.
Fd open_dir_at(int dirfd, const std::string& name, const std::string& display);

/// The names in directory `dirfd` (an open directory), "." and ".." left out, in the
/// order the filesystem gives them; read from the start with getdents64, the descriptor's
/// offset left at the end. Throws Error naming `display` when the directory cannot be read.
std::vector<std::string> dir_names(int dirfd, const std::string& display);

/// Reads the whole file; throws Error(not_found/failed) naming the path.
std::string read_file(const std::filesystem::path& path);
/// Writes all bytes, retrying short writes; throws naming `what`.
void write_all(int fd, std::span<const uint8_t> data, const std::string& what);
void pwrite_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& what);
/// Reads up to data.size() bytes, retrying short reads; returns bytes read (< size only at EOF).
size_t read_full(int fd, std::span<uint8_t> data, const std::string& what);

/// The durable-write idiom: write to a temporary file beside `path`, commit() fsyncs
/// and renames it into place (and fsyncs the directory); the destructor discards an
/// uncommitted file.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path, mode_t mode = 0644);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(std::span<const uint8_t> data);
  void write(std::string_view data) {
    write(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  }
  void commit();

 private:
  std::filesystem::path m_path;
  std::filesystem::path m_tmp;
  Fd m_fd;
  bool m_committed = false;
};

/// fsyncs a directory so a rename or create inside it is durable.
void fsync_dir(const std::filesystem::path& dir);

/// Creates the directory and its parents with `mode` (less the umask) if missing;
/// Error(not_found) for a dangling symlink in the way, Error(permission) where this
/// user may not create it.
void make_dirs(const std::filesystem::path& dir, mode_t mode = 0700);

/// An exclusive flock(2) on `file` (made 0600 when missing) that holds this process's
/// pid, for as long as the object lives (one sync of a state directory, one streaming
/// restore of a device). When another process holds it: Error(unavailable, `busy`'s
/// message given the holder's pid or "", reason "busy"), exit 75.
class PidLock {
 public:
  PidLock(const std::filesystem::path& file, const std::function<std::string(const std::string& holder)>& busy);

 private:
  Fd m_fd;
};

}  // namespace mirage::util

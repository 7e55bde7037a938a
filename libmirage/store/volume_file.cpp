// The local-directory volume: DIR/packs/ab/ab12….pack, directories 0700, files 0600.
// Appends are pwrite()s at the writer's end; durable() is fdatasync(), plus an fsync of
// the pack's directory the first time (so the new file's name survives a crash too).
// A volume on a read-only filesystem lists and reads; creating a pack fails there.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "libmirage/store/volume.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::store {

namespace fs = std::filesystem;

namespace {

/// A name that cannot leave DIR/packs/ab/: not empty, no '/', not starting with '.'.
void check_name(const std::string& name) {
  if (name.size() < 2 || name.find('/') != std::string::npos || name[0] == '.')
    throw Error(ErrorKind::usage, "pack name '" + name + "': not a pack name");
}

class FileWriter final : public PackWriter {
 public:
  FileWriter(std::string name, fs::path dir, fs::path file, util::Fd fd)
      : m_name(std::move(name)), m_dir(std::move(dir)), m_file(std::move(file)), m_fd(std::move(fd)) {}

  const std::string& name() const override { return m_name; }

  uint64_t append(std::span<const uint8_t> bytes) override {
    if (!m_fd) throw Error(ErrorKind::precondition, "pack " + m_name + ": sealed, no more appends");
    uint64_t at = m_size;
    util::pwrite_all(m_fd.get(), bytes, at, "pack " + m_file.string());
    m_size += bytes.size();
    return at;
  }

  uint64_t durable() override {
    if (!m_fd || (m_durable == m_size && m_dir_synced)) return m_durable;
    if (::fdatasync(m_fd.get()) != 0) throw_errno("fsync pack " + m_file.string());
    if (!m_dir_synced) {
      util::fsync_dir(m_dir);
      m_dir_synced = true;
    }
    m_durable = m_size;
    return m_durable;
  }

  uint64_t size() const override { return m_size; }

  void seal() override {
    if (!m_fd) return;
    durable();
    m_fd = util::Fd();
  }

  void abandon() noexcept override {
    if (!m_fd) return;
    // Best effort: a file that cannot be cut keeps an unindexed tail (GC's repack drops it).
    if (::ftruncate(m_fd.get(), static_cast<off_t>(m_durable)) == 0) (void)::fdatasync(m_fd.get());
    m_size = m_durable;
    m_fd = util::Fd();
  }

 private:
  std::string m_name;
  fs::path m_dir, m_file;
  util::Fd m_fd;
  uint64_t m_size = 0, m_durable = 0;
  bool m_dir_synced = false;
};

class FileReader final : public PackReader {
 public:
  FileReader(std::string name, util::Fd fd) : m_name(std::move(name)), m_fd(std::move(fd)) {}

  const std::string& name() const override { return m_name; }

  size_t read_some(uint64_t offset, std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(m_fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_errno(ErrorKind::integrity, "read pack " + m_name);
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  uint64_t size() override {
    struct stat st {};
    if (::fstat(m_fd.get(), &st) != 0) throw_errno(ErrorKind::integrity, "stat pack " + m_name);
    return static_cast<uint64_t>(st.st_size);
  }

  void will_need(uint64_t offset, uint64_t length) override {
    ::posix_fadvise(m_fd.get(), static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
  }

 private:
  std::string m_name;
  util::Fd m_fd;
};

class FileVolume final : public Volume {
 public:
  FileVolume(std::string url, fs::path dir) : m_url(std::move(url)), m_dir(std::move(dir)) {}

  const std::string& url() const override { return m_url; }

  void init() override { util::make_dirs(m_dir / "packs"); }

  std::unique_ptr<PackWriter> create_pack() override {
    std::string name = util::random_hex(16);
    fs::path dir = m_dir / "packs" / name.substr(0, 2);
    util::make_dirs(dir);
    fs::path file = dir / (name + ".pack");
    util::Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create pack " + file.string());
    return std::make_unique<FileWriter>(std::move(name), std::move(dir), std::move(file), std::move(fd));
  }

  std::unique_ptr<PackReader> open_pack(const std::string& name) override {
    check_name(name);
    util::Fd fd(::open(file_of(name).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno(errno == ENOENT ? ErrorKind::not_found : ErrorKind::integrity, "open pack " + name);
    return std::make_unique<FileReader>(name, std::move(fd));
  }

  bool remove(const std::string& name) override {
    check_name(name);
    fs::path file = file_of(name);
    if (::unlink(file.c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    throw_errno("delete pack " + file.string());
  }

  std::vector<PackListing> list() override {
    std::vector<PackListing> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(m_dir / "packs", ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file() && it->path().extension() == ".pack")
        out.push_back({it->path().stem().string(), it->path().string()});
    }
    return out;
  }

  VolumeUsage usage() override {
    struct statvfs st {};
    if (::statvfs(m_dir.c_str(), &st) != 0) throw_errno("volume " + m_dir.string());
    return {static_cast<uint64_t>(st.f_blocks - st.f_bfree) * st.f_frsize, static_cast<uint64_t>(st.f_bavail) * st.f_frsize};
  }

  std::string location(const std::string& name) const override { return file_of(name).string(); }

 private:
  fs::path file_of(const std::string& name) const { return m_dir / "packs" / name.substr(0, 2) / (name + ".pack"); }

  std::string m_url;
  fs::path m_dir;
};

}  // namespace

std::unique_ptr<Volume> open_file_volume(const std::string& url, const std::string& dir) {
  return std::make_unique<FileVolume>(url, dir);
}

}  // namespace mirage::store

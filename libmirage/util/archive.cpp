#include "libmirage/util/archive.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "libmirage/util/dynlib.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::util {

namespace {

// libarchive's functions, loaded on first use (see dynlib.hpp for why), typed by its headers.
struct LibArchive {
  DynLib lib{"libarchive.so.13"};
  MIRAGE_DYNLIB_FUNCTION(entry_free, archive_entry_free);
  MIRAGE_DYNLIB_FUNCTION(entry_new, archive_entry_new);
  MIRAGE_DYNLIB_FUNCTION(entry_set_gid, archive_entry_set_gid);
  MIRAGE_DYNLIB_FUNCTION(entry_set_hardlink, archive_entry_set_hardlink);
  MIRAGE_DYNLIB_FUNCTION(entry_set_mode, archive_entry_set_mode);
  MIRAGE_DYNLIB_FUNCTION(entry_set_mtime, archive_entry_set_mtime);
  MIRAGE_DYNLIB_FUNCTION(entry_set_pathname, archive_entry_set_pathname);
  MIRAGE_DYNLIB_FUNCTION(entry_set_rdev, archive_entry_set_rdev);
  MIRAGE_DYNLIB_FUNCTION(entry_set_size, archive_entry_set_size);
  MIRAGE_DYNLIB_FUNCTION(entry_set_symlink, archive_entry_set_symlink);
  MIRAGE_DYNLIB_FUNCTION(entry_set_uid, archive_entry_set_uid);
  MIRAGE_DYNLIB_FUNCTION(entry_xattr_add_entry, archive_entry_xattr_add_entry);
  MIRAGE_DYNLIB_FUNCTION(error_string, archive_error_string);
  MIRAGE_DYNLIB_FUNCTION(set_error, archive_set_error);
  MIRAGE_DYNLIB_FUNCTION(write_close, archive_write_close);
  MIRAGE_DYNLIB_FUNCTION(write_data, archive_write_data);
  MIRAGE_DYNLIB_FUNCTION(write_free, archive_write_free);
  MIRAGE_DYNLIB_FUNCTION(write_header, archive_write_header);
  MIRAGE_DYNLIB_FUNCTION(write_new, archive_write_new);
  MIRAGE_DYNLIB_FUNCTION(write_open2, archive_write_open2);
  MIRAGE_DYNLIB_FUNCTION(write_set_bytes_in_last_block, archive_write_set_bytes_in_last_block);
  MIRAGE_DYNLIB_FUNCTION(write_set_format_option, archive_write_set_format_option);
  MIRAGE_DYNLIB_FUNCTION(write_set_format_pax, archive_write_set_format_pax);
  MIRAGE_DYNLIB_FUNCTION(write_set_format_zip, archive_write_set_format_zip);
};

// Loaded once and kept for the process's life; a failed load is tried again by the next call.
const LibArchive& la() {
  static const LibArchive* api = new LibArchive;
  return *api;
}

}  // namespace

struct ArchiveWriter::State {
  archive* a = nullptr;
  std::string what;
  int fd = -1;
  bool finished = false;
  bool discard = false;  ///< a broken stream's close: its trailer goes nowhere
  /// Writes what libarchive hands over to `fd`, or drops it once the stream is abandoned
  /// (archive_write_open_fd's own writer cannot drop it, and skipping its close with
  /// archive_write_fail leaks its buffers).
  static la_ssize_t write_to_fd(archive* a, void* data, const void* buf, size_t len) {
    auto* state = static_cast<State*>(data);
    if (state->discard) return static_cast<la_ssize_t>(len);
    for (;;) {
      ssize_t n = ::write(state->fd, buf, len);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      la().set_error(a, errno, "%s", std::strerror(errno));
      return -1;
    }
  }
  [[noreturn]] void fail(const std::string& step) {
    const char* msg = la().error_string(a);
    throw Error(ErrorKind::failed, what + ": " + step + ": " + (msg ? msg : "libarchive error"));
  }
};

ArchiveWriter::ArchiveWriter(int fd, ArchiveFormat format, std::string what) : m_state(std::make_unique<State>()), m_format(format) {
  m_state->what = std::move(what);
  m_state->a = la().write_new();
  if (!m_state->a) throw Error(ErrorKind::failed, m_state->what + ": out of memory");
  int rc = format == ArchiveFormat::tar ? la().write_set_format_pax(m_state->a)
                                        : la().write_set_format_zip(m_state->a);
  if (rc != ARCHIVE_OK) m_state->fail("set format");
  // xattrs only as SCHILY.xattr (GNU tar and tarfile read it; GNU tar warns about
  // libarchive's own LIBARCHIVE.xattr keywords).
  if (format == ArchiveFormat::tar && la().write_set_format_option(m_state->a, "pax", "xattrheader", "SCHILY") != ARCHIVE_OK)
    m_state->fail("set xattr header");
  // Streams go to a pipe: no padding of the last block beyond tar's own 10 KiB record.
  if (format == ArchiveFormat::zip) la().write_set_bytes_in_last_block(m_state->a, 1);
  m_state->fd = fd;
  if (la().write_open2(m_state->a, m_state.get(), nullptr, State::write_to_fd, nullptr, nullptr) != ARCHIVE_OK)
    m_state->fail("open");
}

ArchiveWriter::~ArchiveWriter() {
  if (!m_state || !m_state->a) return;
  if (!m_state->finished) {  // no trailer for a broken stream: closed with its output dropped
    m_state->discard = true;
    la().write_close(m_state->a);
  }
  la().write_free(m_state->a);
}

bool ArchiveWriter::has_hardlinks() const { return m_format == ArchiveFormat::tar; }

void ArchiveWriter::add(const ArchiveMember& m) {
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(la().entry_new(), la().entry_free);
  if (!e) throw Error(ErrorKind::failed, m_state->what + ": out of memory");
  la().entry_set_pathname(e.get(), m.path.c_str());
  la().entry_set_uid(e.get(), m.uid);
  la().entry_set_gid(e.get(), m.gid);
  int64_t sec = m.mtime_ns / 1'000'000'000, nsec = m.mtime_ns % 1'000'000'000;
  if (nsec < 0) {  // floor, for times before 1970
    sec -= 1;
    nsec += 1'000'000'000;
  }
  la().entry_set_mtime(e.get(), sec, static_cast<long>(nsec));
  la().entry_set_mode(e.get(), static_cast<mode_t>(m.type | (m.mode & 07777)));
  if (!m.hardlink.empty()) {
    la().entry_set_hardlink(e.get(), m.hardlink.c_str());
    la().entry_set_size(e.get(), 0);
  } else {
    la().entry_set_size(e.get(), static_cast<la_int64_t>(m.size));
  }
  if (!m.symlink.empty()) la().entry_set_symlink(e.get(), m.symlink.c_str());
  if (m.rdev) la().entry_set_rdev(e.get(), static_cast<dev_t>(m.rdev));
  for (const auto& [name, value] : m.xattrs)
    la().entry_xattr_add_entry(e.get(), name.c_str(), value.data(), value.size());
  if (la().write_header(m_state->a, e.get()) < ARCHIVE_WARN) m_state->fail("write header of " + m.path);
}

void ArchiveWriter::data(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    la_ssize_t n = la().write_data(m_state->a, bytes.data(), bytes.size());
    if (n <= 0) m_state->fail("write data");
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
}

void ArchiveWriter::finish() {
  if (la().write_close(m_state->a) != ARCHIVE_OK) m_state->fail("close");
  m_state->finished = true;
}


}  // namespace mirage::util

#include "libmirage/scan/files_cache.hpp"

#include <algorithm>
#include <utility>

#include "libmirage/util/bytes.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::scan {

namespace {
constexpr uint64_t k_no_xattrs = 1;  // a file's flags (MFC3)
}

FilesCache FilesCache::load(const std::filesystem::path& file, bool* damaged) {
  FilesCache cache;
  if (damaged) *damaged = false;
  std::string data;
  try {
    data = util::read_file(file);
  } catch (const Error&) {
    return cache;
  }
  try {
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    // MFC2 (before the per-file flags) is still read: a cache from the version before
    // must not make the next sync read every file again.
    bool flags = data.compare(0, 4, "MFC3") == 0;
    if (bytes.size() < 12 || (!flags && data.compare(0, 4, "MFC2") != 0)) throw Error(ErrorKind::integrity, "bad header");
    util::ByteReader tail(bytes.subspan(bytes.size() - 8), "files cache");
    if (tail.u64le() != util::xxh3(bytes.first(bytes.size() - 8))) throw Error(ErrorKind::integrity, "bad checksum");
    util::ByteReader r(bytes.subspan(4, bytes.size() - 12), "files cache");
    uint64_t ndirs = r.varint();
    if (ndirs > bytes.size()) throw Error(ErrorKind::integrity, "count exceeds size");
    cache.m_dirs.reserve(static_cast<size_t>(ndirs));
    for (uint64_t d = 0; d < ndirs; ++d) {
      std::string dir = r.str(1 << 16);
      uint64_t nfiles = r.varint();
      if (nfiles > bytes.size()) throw Error(ErrorKind::integrity, "count exceeds size");
      std::vector<CachedFile> files(static_cast<size_t>(nfiles));
      for (auto& f : files) {
        f.name = r.str(255);
        f.stamp.size = r.varint();
        f.stamp.mtime_ns = r.svarint();
        f.stamp.ctime_ns = r.svarint();
        f.stamp.inode = r.varint();
        if (flags) f.no_xattrs = (r.varint() & k_no_xattrs) != 0;
        uint64_t n = r.varint();
        if (n > bytes.size()) throw Error(ErrorKind::integrity, "count exceeds size");
        f.chunks.resize(static_cast<size_t>(n));
        for (auto& c : f.chunks) {
          c.id = util::Digest::from_span(r.raw(32));
          c.size = r.varint();
        }
      }
      cache.m_dirs.emplace(std::move(dir), std::move(files));
    }
    uint64_t ntrees = r.varint();
    for (uint64_t i = 0; i < ntrees; ++i) cache.m_trees.insert(util::Digest::from_span(r.raw(32)));
    if (!r.at_end()) throw Error(ErrorKind::integrity, "trailing bytes");
  } catch (const Error&) {
    if (damaged) *damaged = true;
    return FilesCache();
  }
  return cache;
}

std::vector<uint8_t> FilesCache::encode() const {
  util::ByteWriter w;
  w.raw(std::string_view("MFC3"));
  w.varint(m_dirs.size());
  for (const auto& [dir, files] : m_dirs) {
    w.str(dir);
    w.varint(files.size());
    for (const auto& f : files) {
      w.str(f.name);
      w.varint(f.stamp.size);
      w.svarint(f.stamp.mtime_ns);
      w.svarint(f.stamp.ctime_ns);
      w.varint(f.stamp.inode);
      w.varint(f.no_xattrs ? k_no_xattrs : 0);
      w.varint(f.chunks.size());
      for (const auto& c : f.chunks) {
        w.raw(c.id.bytes);
        w.varint(c.size);
      }
    }
  }
  w.varint(m_trees.size());
  for (const auto& t : m_trees) w.raw(t.bytes);
  w.u64le(util::xxh3(w.data()));
  return w.take();
}

void FilesCache::save_encoded(const std::filesystem::path& file, std::span<const uint8_t> bytes) {
  util::make_dirs(file.parent_path());
  util::AtomicFile out(file, 0600);
  out.write(bytes);
  out.commit();
}

const std::vector<CachedFile>* FilesCache::directory(const std::string& dir_path) const {
  auto it = m_dirs.find(dir_path);
  return it == m_dirs.end() ? nullptr : &it->second;
}

std::vector<CachedFile>* FilesCache::directory(const std::string& dir_path) {
  return const_cast<std::vector<CachedFile>*>(std::as_const(*this).directory(dir_path));
}

const CachedFile* FilesCache::lookup(const std::vector<CachedFile>* files, const std::string& name,
                                     const FileStamp& stamp) {
  if (!files) return nullptr;
  auto it = std::lower_bound(files->begin(), files->end(), name,
                             [](const CachedFile& f, const std::string& n) { return f.name < n; });
  if (it == files->end() || it->name != name || !(it->stamp == stamp)) return nullptr;
  return &*it;
}

void FilesCache::add_directory(const std::string& dir_path, std::vector<CachedFile> files) {
  if (!files.empty()) m_dirs[dir_path] = std::move(files);
}

void FilesCache::set_file(const std::string& dir_path, CachedFile file) {
  auto& files = m_dirs[dir_path];
  auto it = std::lower_bound(files.begin(), files.end(), file.name,
                             [](const CachedFile& f, const std::string& name) { return f.name < name; });
  if (it != files.end() && it->name == file.name)
    *it = std::move(file);
  else
    files.insert(it, std::move(file));
}

}  // namespace mirage::scan

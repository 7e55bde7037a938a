#include "libmirage/scan/files_cache.hpp"

#include "libmirage/util/bytes.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::scan {

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
    if (bytes.size() < 12 || data.compare(0, 4, "MFC1") != 0) throw Error(ErrorKind::integrity, "bad header");
    util::ByteReader tail(bytes.subspan(bytes.size() - 8), "files cache");
    if (tail.u64le() != util::xxh3(bytes.first(bytes.size() - 8))) throw Error(ErrorKind::integrity, "bad checksum");
    util::ByteReader r(bytes.subspan(4, bytes.size() - 12), "files cache");
    uint64_t count = r.varint();
    for (uint64_t i = 0; i < count; ++i) {
      std::string path = r.str(1 << 16);
      Item item;
      item.stamp.size = r.varint();
      item.stamp.mtime_ns = r.svarint();
      item.stamp.ctime_ns = r.svarint();
      item.stamp.inode = r.varint();
      uint64_t n = r.varint();
      for (uint64_t c = 0; c < n; ++c) {
        tree::ChunkRef ref;
        ref.id = util::Digest::from_span(r.raw(32));
        ref.size = r.varint();
        item.chunks.push_back(ref);
      }
      cache.m_files.emplace(std::move(path), std::move(item));
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

void FilesCache::save(const std::filesystem::path& file) const {
  util::ByteWriter w;
  w.raw(std::string_view("MFC1"));
  w.varint(m_files.size());
  for (const auto& [path, item] : m_files) {
    w.str(path);
    w.varint(item.stamp.size);
    w.svarint(item.stamp.mtime_ns);
    w.svarint(item.stamp.ctime_ns);
    w.varint(item.stamp.inode);
    w.varint(item.chunks.size());
    for (const auto& c : item.chunks) {
      w.raw(c.id.bytes);
      w.varint(c.size);
    }
  }
  w.varint(m_trees.size());
  for (const auto& t : m_trees) w.raw(t.bytes);
  w.u64le(util::xxh3(w.data()));
  util::make_dirs(file.parent_path());
  util::AtomicFile out(file, 0600);
  out.write(w.data());
  out.commit();
}

const std::vector<tree::ChunkRef>* FilesCache::lookup(const std::string& path, const FileStamp& stamp) const {
  auto it = m_files.find(path);
  if (it == m_files.end() || !(it->second.stamp == stamp)) return nullptr;
  return &it->second.chunks;
}

void FilesCache::add(const std::string& path, const FileStamp& stamp, std::vector<tree::ChunkRef> chunks) {
  m_files[path] = Item{stamp, std::move(chunks)};
}

}  // namespace mirage::scan

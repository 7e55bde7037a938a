#include "libmirage/store/volume.hpp"

#include "libmirage/util/error.hpp"

namespace mirage::store {

void PackReader::read(uint64_t offset, std::span<uint8_t> out) {
  size_t n = read_some(offset, out);
  if (n != out.size())
    throw Error(ErrorKind::integrity, "pack " + name() + ": truncated: " + std::to_string(out.size()) +
                                          " bytes wanted at offset " + std::to_string(offset) + ", " +
                                          std::to_string(n) + " there");
}

std::vector<uint8_t> Volume::read(const std::string& name, uint64_t offset, uint64_t length) {
  auto reader = open_pack(name);
  std::vector<uint8_t> out(length);
  reader->read(offset, out);
  return out;
}

std::unique_ptr<Volume> open_volume(const std::string& url) {
  constexpr std::string_view file = "file://", mem = "mem://";
  if (url.starts_with(file)) {
    std::string dir = url.substr(file.size());
    if (dir.empty() || dir[0] != '/')
      throw Error(ErrorKind::usage, "volume '" + url + "': a file URL names an absolute path on this host (file:///dir)");
    return open_file_volume(url, dir);
  }
  if (url.starts_with(mem)) {
    std::string name = url.substr(mem.size());
    if (name.empty() || name.find('/') != std::string::npos)
      throw Error(ErrorKind::usage, "volume '" + url + "': give a name without '/' (mem://name)");
    return open_memory_volume(url, name);
  }
  if (!url.empty() && url[0] == '/') return open_file_volume(url, url);
  if (auto colon = url.find("://"); colon != std::string::npos)
    throw Error(ErrorKind::usage, "volume '" + url + "': unknown scheme '" + url.substr(0, colon) + "' (file://, mem://)");
  throw Error(ErrorKind::usage, "volume '" + url + "': give an absolute path or a URL (file:///dir)");
}

}  // namespace mirage::store

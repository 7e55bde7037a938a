#include "libmirage/materialize/content.hpp"

#include <unistd.h>

#include <algorithm>

#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::materialize {

namespace {

constexpr size_t k_block = 4096;

bool all_zero(std::span<const uint8_t> data) {
  return std::all_of(data.begin(), data.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

ContentWriter::ContentWriter(int fd, const tree::Entry& entry, std::string path)
    : m_fd(fd), m_size(entry.size), m_sparse(entry.sparse), m_path(std::move(path)) {}

void ContentWriter::write(std::span<const uint8_t> data) {
  m_last_zero = false;
  if (!m_sparse) {
    util::pwrite_all(m_fd, data, m_offset, m_path);
  } else {
    // Zero blocks (aligned to the file, so they can become holes) stay unwritten.
    size_t pos = 0;
    bool wrote = false;
    while (pos < data.size()) {
      uint64_t at = m_offset + pos;
      size_t len = std::min<size_t>(k_block - static_cast<size_t>(at % k_block), data.size() - pos);
      auto block = data.subspan(pos, len);
      if (!all_zero(block)) {
        util::pwrite_all(m_fd, block, at, m_path);
        wrote = true;
      }
      pos += len;
    }
    m_last_zero = !wrote;
  }
  m_offset += data.size();
}

void ContentWriter::write_again(std::span<const uint8_t> data) {
  // Zeros at any offset are holes however the blocks fall: nothing to look at again.
  if (m_sparse && m_last_zero)
    m_offset += data.size();
  else
    write(data);
}

void ContentWriter::finish() {
  if (::ftruncate(m_fd, static_cast<off_t>(m_size)) != 0) throw_errno("truncate " + m_path);
}

}  // namespace mirage::materialize

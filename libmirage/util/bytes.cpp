#include "libmirage/util/bytes.hpp"

#include "libmirage/util/error.hpp"

namespace mirage::util {

void ByteWriter::u32le(uint32_t v) {
  for (int i = 0; i < 4; ++i) m_out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void ByteWriter::u64le(uint64_t v) {
  for (int i = 0; i < 8; ++i) m_out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void ByteWriter::varint(uint64_t v) {
  while (v >= 0x80) {
    m_out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  m_out.push_back(static_cast<uint8_t>(v));
}

void ByteReader::fail(const std::string& why) const {
  throw Error(ErrorKind::integrity, m_what + ": " + why + " at byte " + std::to_string(m_pos));
}

uint8_t ByteReader::u8() {
  if (m_pos >= m_data.size()) fail("truncated");
  return m_data[m_pos++];
}
uint32_t ByteReader::u32le() {
  auto b = raw(4);
  return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
}
uint64_t ByteReader::u64le() {
  auto b = raw(8);
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | b[static_cast<size_t>(i)];
  return v;
}
uint64_t ByteReader::varint() {
  // Canonical LEB128 only: no redundant trailing zero groups and no bits past 64, so
  // every value has exactly one encoding (tree ids depend on it).
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b = u8();
    if (shift == 63 && b > 1) fail("varint overflows 64 bits");
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (b == 0 && shift > 0) fail("non-canonical varint");
      return v;
    }
  }
  fail("varint too long");
}
std::span<const uint8_t> ByteReader::raw(size_t n) {
  if (n > m_data.size() - m_pos) fail("truncated (wanted " + std::to_string(n) + " bytes)");
  auto out = m_data.subspan(m_pos, n);
  m_pos += n;
  return out;
}
std::string ByteReader::str(size_t max_len) {
  uint64_t n = varint();
  if (n > max_len) fail("string of " + std::to_string(n) + " bytes exceeds limit");
  auto b = raw(static_cast<size_t>(n));
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace mirage::util

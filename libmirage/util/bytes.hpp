#pragma once
// Little binary codec used by the on-disk and wire formats: LEB128 varints, fixed
// little-endian integers, length-prefixed strings. The reader never reads past its
// span: every overrun throws Error(integrity) naming `what`.
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mirage::util {

class ByteWriter {
 public:
  void u8(uint8_t v) { m_out.push_back(v); }
  void u32le(uint32_t v);
  void u64le(uint64_t v);
  void varint(uint64_t v);
  void svarint(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void raw(std::span<const uint8_t> bytes) { m_out.insert(m_out.end(), bytes.begin(), bytes.end()); }
  void raw(std::string_view bytes) {
    // resize and copy, not insert: GCC 12 at -O3 warns -Wstringop-overflow falsely on
    // an insert into an empty vector.
    size_t at = m_out.size();
    m_out.resize(at + bytes.size());
    if (!bytes.empty()) std::memcpy(m_out.data() + at, bytes.data(), bytes.size());
  }
  void str(std::string_view s) {
    varint(s.size());
    raw(s);
  }
  std::vector<uint8_t>& data() { return m_out; }
  std::vector<uint8_t> take() { return std::move(m_out); }

 private:
  std::vector<uint8_t> m_out;
};

class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> data, std::string what) : m_data(data), m_what(std::move(what)) {}
  uint8_t u8();
  uint32_t u32le();
  uint64_t u64le();
  uint64_t varint();
  int64_t svarint() {
    uint64_t v = varint();
    return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
  }
  std::span<const uint8_t> raw(size_t n);
  std::string str(size_t max_len);
  bool at_end() const { return m_pos == m_data.size(); }
  size_t pos() const { return m_pos; }
  [[noreturn]] void fail(const std::string& why) const;

 private:
  std::span<const uint8_t> m_data;
  size_t m_pos = 0;
  std::string m_what;
};

}  // namespace mirage::util

#include "libmirage/store/record.hpp"

#include <array>
#include <cstring>

#include "libmirage/util/bytes.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/zstd.hpp"

namespace mirage::store {

void append_record(std::vector<uint8_t>& out, const Digest& id, Codec codec, uint32_t raw_size,
                   std::span<const uint8_t> data) {
  std::array<uint8_t, k_record_header> h;
  std::memcpy(h.data(), id.bytes.data(), 32);
  h[32] = static_cast<uint8_t>(codec);
  uint32_t stored = static_cast<uint32_t>(data.size());
  for (int i = 0; i < 4; ++i) {
    h[33 + i] = static_cast<uint8_t>(raw_size >> (8 * i));
    h[37 + i] = static_cast<uint8_t>(stored >> (8 * i));
  }
  // insert, not resize + memcpy: the new bytes are written once, never zero-filled first.
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), data.begin(), data.end());
}

void append_plain(std::vector<uint8_t>& out, const Digest& id, std::span<const uint8_t> plain, int level) {
  // Chunks compress into a buffer each thread keeps (no allocation, no zero-fill per
  // chunk); a large object (a tree) gets one of its own.
  constexpr size_t k_keep = 1u << 20;
  thread_local std::vector<uint8_t> kept;
  std::vector<uint8_t> own;
  size_t bound = util::zstd_bound(plain.size());
  std::vector<uint8_t>& packed = bound <= k_keep ? kept : own;
  if (packed.size() < bound) packed.resize(bound);
  size_t n = util::zstd_compress_into(plain, packed, level);
  if (n + plain.size() / 32 < plain.size())
    append_record(out, id, Codec::zstd, static_cast<uint32_t>(plain.size()), std::span(packed).first(n));
  else
    append_record(out, id, Codec::raw, static_cast<uint32_t>(plain.size()), plain);
}

Record parse_record(std::span<const uint8_t> data, const std::string& what) {
  util::ByteReader r(data, what);
  Record rec;
  rec.id = Digest::from_span(r.raw(32));
  uint8_t codec = r.u8();
  if (codec > 1) r.fail("unknown codec " + std::to_string(codec));
  rec.codec = static_cast<Codec>(codec);
  rec.raw_size = r.u32le();
  uint32_t stored = r.u32le();
  if (rec.raw_size > k_max_chunk) r.fail("chunk of " + std::to_string(rec.raw_size) + " bytes exceeds the limit");
  if (rec.codec == Codec::raw && stored != rec.raw_size) r.fail("raw chunk with mismatched sizes");
  rec.data = r.raw(stored);
  return rec;
}

std::optional<Record> RecordReader::next() {
  if (m_pos == m_data.size()) return std::nullopt;
  Record rec = parse_record(m_data.subspan(m_pos), m_what + " (record at byte " + std::to_string(m_pos) + ")");
  m_pos += k_record_header + rec.data.size();
  return rec;
}

void open_record_into(const Record& record, std::span<uint8_t> out, const std::string& what) {
  if (out.size() != record.raw_size) throw Error(ErrorKind::integrity, what + ": size mismatch");
  try {
    if (record.codec == Codec::zstd)
      util::zstd_decompress(record.data, out);
    else if (!out.empty())
      std::memcpy(out.data(), record.data.data(), out.size());
  } catch (const Error&) {
    rethrow_with_context(what + ": chunk " + record.id.hex());
  }
  if (util::sha256(out) != record.id)
    throw Error(ErrorKind::integrity, what + ": chunk " + record.id.hex() + " does not match its id (corrupt or forged)");
}

void verify_record(const Record& record, std::vector<uint8_t>& scratch, const std::string& what) {
  if (record.codec == Codec::raw) {
    if (record.data.size() != record.raw_size) throw Error(ErrorKind::integrity, what + ": size mismatch");
    if (util::sha256(record.data) != record.id)
      throw Error(ErrorKind::integrity, what + ": chunk " + record.id.hex() + " does not match its id (corrupt or forged)");
    return;
  }
  if (scratch.size() < record.raw_size) scratch.resize(record.raw_size);
  open_record_into(record, std::span(scratch).first(record.raw_size), what);
}

void check_record_framing(const Record& record, const std::string& what) {
  if (record.codec != Codec::zstd) return;  // parse_record checked a raw record's sizes
  uint64_t declared = 0;
  try {
    declared = util::zstd_content_size(record.data);
  } catch (const Error&) {
    rethrow_with_context(what + ": chunk " + record.id.hex());
  }
  if (declared != record.raw_size)
    throw Error(ErrorKind::integrity, what + ": chunk " + record.id.hex() + ": its zstd frame holds " +
                                          std::to_string(declared) + " bytes, the record says " +
                                          std::to_string(record.raw_size));
}

std::vector<uint8_t> open_record(const Record& record, const std::string& what) {
  std::vector<uint8_t> out(record.raw_size);
  open_record_into(record, out, what);
  return out;
}

}  // namespace mirage::store

#pragma once
// A chunk record: the unit in pack files and in bulk chunk frames on the wire.
//
//   id      32 bytes   SHA-256 of the plaintext
//   codec   u8         0 raw, 1 zstd
//   raw     u32 le     plaintext length (<= k_max_chunk)
//   stored  u32 le     length of the data that follows
//   data    stored bytes
//
// Nothing in a record is trusted: open_record() decodes and recomputes the id.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "libmirage/util/digest.hpp"

namespace mirage::store {

using util::Digest;

enum class Codec : uint8_t { raw = 0, zstd = 1 };

constexpr size_t k_record_header = 41;
/// Largest plaintext object (tree objects of huge directories are the large ones).
constexpr uint32_t k_max_chunk = 64u << 20;

struct Record {
  Digest id;
  Codec codec = Codec::raw;
  uint32_t raw_size = 0;
  std::span<const uint8_t> data;
};

/// Appends a record to `out`.
void append_record(std::vector<uint8_t>& out, const Digest& id, Codec codec, uint32_t raw_size,
                   std::span<const uint8_t> data);
/// Compresses `plain` with zstd at `level` and appends its record; stored raw when
/// compression saves less than 1/32 of the size.
void append_plain(std::vector<uint8_t>& out, const Digest& id, std::span<const uint8_t> plain, int level);

/// Parses one record header + data at the start of `data`; throws Error(integrity)
/// naming `what` when truncated or out of range.
Record parse_record(std::span<const uint8_t> data, const std::string& what);

/// Walks a buffer of back-to-back records.
class RecordReader {
 public:
  RecordReader(std::span<const uint8_t> data, std::string what) : m_data(data), m_what(std::move(what)) {}
  std::optional<Record> next();

 private:
  std::span<const uint8_t> m_data;
  size_t m_pos = 0;
  std::string m_what;
};

/// The plaintext of a record, verified: throws Error(integrity) naming `what` when it
/// does not decode or its SHA-256 differs from the id.
std::vector<uint8_t> open_record(const Record& record, const std::string& what);
/// As open_record, into a caller buffer of exactly record.raw_size bytes.
void open_record_into(const Record& record, std::span<uint8_t> out, const std::string& what);
/// Checks a record as open_record does, without keeping its plaintext: a raw record is
/// hashed where it lies, a compressed one decoded into `scratch` (grown as needed).
void verify_record(const Record& record, std::vector<uint8_t>& scratch, const std::string& what);
/// Checks what a record says about itself without decoding it: a zstd frame's header
/// declares the record's raw size. For uploads from the store's owner
/// (store::UploadCheck::framing); throws Error(integrity).
void check_record_framing(const Record& record, const std::string& what);

}  // namespace mirage::store

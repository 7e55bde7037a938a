#include "libmirage/util/digest.hpp"

#include <openssl/evp.h>
#include <xxhash.h>

#include <cstring>

#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::util {

bool Digest::is_zero() const {
  for (auto b : bytes)
    if (b) return false;
  return true;
}

std::string Digest::hex() const { return to_hex(bytes); }

std::optional<Digest> Digest::from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  auto raw = util::from_hex(hex);
  if (!raw) return std::nullopt;
  Digest d;
  std::memcpy(d.bytes.data(), raw->data(), 32);
  return d;
}

Digest Digest::parse(std::string_view hex, std::string_view what) {
  auto d = from_hex(hex);
  if (!d) throw Error(ErrorKind::usage, std::string(what) + ": not a 64-digit hex id: '" + std::string(hex) + "'");
  return *d;
}

Digest Digest::from_span(std::span<const uint8_t> raw32) {
  Digest d;
  std::memcpy(d.bytes.data(), raw32.data(), 32);
  return d;
}

Digest sha256(std::span<const uint8_t> data) {
  static const EVP_MD* md = EVP_sha256();
  Digest d;
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.bytes.data(), &len, md, nullptr) != 1 || len != 32)
    throw Error(ErrorKind::failed, "sha256: openssl digest failed");
  return d;
}

std::string sha256_hex(std::string_view data) { return sha256(data).hex(); }

uint64_t xxh3(std::span<const uint8_t> data) { return XXH3_64bits(data.data(), data.size()); }

}  // namespace mirage::util

#pragma once
// Content ids and fast non-cryptographic hashes. SHA-256 (OpenSSL, SHA-NI where the
// CPU has it) names every chunk and tree; xxHash is for what is not security-relevant.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mirage::util {

/// A SHA-256 digest: the id of a chunk or tree object.
struct Digest {
  std::array<uint8_t, 32> bytes{};

  auto operator<=>(const Digest&) const = default;
  bool is_zero() const;
  std::string hex() const;
  /// Parses 64 hex digits; nullopt otherwise.
  static std::optional<Digest> from_hex(std::string_view hex);
  /// Parses 64 hex digits; throws Error(usage) naming `what` otherwise.
  static Digest parse(std::string_view hex, std::string_view what);
  static Digest from_span(std::span<const uint8_t> raw32);
};

Digest sha256(std::span<const uint8_t> data);
inline Digest sha256(std::string_view data) {
  return sha256(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

/// Hex of SHA-256 of a string (token hashes).
std::string sha256_hex(std::string_view data);

uint64_t xxh3(std::span<const uint8_t> data);
inline uint64_t xxh3(std::string_view data) {
  return xxh3(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h;
    static_assert(sizeof h <= sizeof d.bytes);
    __builtin_memcpy(&h, d.bytes.data(), sizeof h);
    return h;
  }
};

}  // namespace mirage::util

#include "libmirage/util/hex.hpp"

#include <sys/random.h>

#include <vector>

#include "libmirage/util/error.hpp"

namespace mirage::util {

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = k_digits[bytes[i] >> 4];
    out[2 * i + 1] = k_digits[bytes[i] & 15];
  }
  return out;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string random_hex(size_t n_bytes) {
  std::vector<uint8_t> buf(n_bytes);
  size_t got = 0;
  while (got < n_bytes) {
    ssize_t n = getrandom(buf.data() + got, n_bytes - got, 0);
    if (n < 0) throw_errno(ErrorKind::failed, "getrandom");
    got += static_cast<size_t>(n);
  }
  return to_hex(buf);
}

}  // namespace mirage::util

#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mirage::util {

std::string to_hex(std::span<const uint8_t> bytes);
/// Parses lowercase or uppercase hex into bytes; nullopt on odd length or a non-hex digit.
std::optional<std::string> from_hex(std::string_view hex);
/// Random lowercase hex string of 2*n_bytes characters (from the OS CSPRNG).
std::string random_hex(size_t n_bytes);

}  // namespace mirage::util

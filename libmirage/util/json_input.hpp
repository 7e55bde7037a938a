#pragma once
// The one reader of "FILE or - (stdin)" JSON arguments (--input, --file, --rules).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace mirage::util {

/// The JSON document in `source`: a file, or standard input for "-". `what` names the
/// argument in messages ("--input", "rules"). Throws Error(not_found) naming a missing
/// file (permission, failed: as util::read_file), and Error(usage) naming the source
/// and the position for text that is not JSON: "--file x.json: not valid JSON at line 2,
/// column 5 (byte 17): ...". A source longer than `max_bytes` is refused (Error(usage):
/// "WHAT FILE: larger than N bytes") without reading more than that of it; by default
/// 16 MiB, which every document a command reads (flags, a policy, rules) is far below:
/// a stray multi-GB stream is refused, not read into memory.
constexpr size_t k_max_json_input = 16u << 20;
nlohmann::json read_json_input(const std::string& source, const std::string& what, size_t max_bytes = k_max_json_input);

}  // namespace mirage::util

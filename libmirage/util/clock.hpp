#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mirage::util {

/// Nanoseconds since the Unix epoch, from the real-time clock (or, for tests, the fixed
/// moment $MIRAGE_TEST_NOW names, e.g. 2026-01-05T10:00:00Z).
int64_t now_ns();
/// RFC 3339 in UTC with second precision: 2026-11-25T10:00:00Z.
std::string rfc3339(int64_t ns);
/// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS][Z]" or with a space for T, as UTC;
/// returns ns since the epoch of the end of that moment's precision (a date means the
/// whole day, so "latest snapshot at or before" includes that day). nullopt if malformed.
std::optional<int64_t> parse_time_upper(std::string_view text);
/// The first nanosecond of the same period (for "since").
std::optional<int64_t> parse_time_lower(std::string_view text);

}  // namespace mirage::util

#pragma once
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mirage::util {

/// Nanoseconds since the Unix epoch, from the real-time clock; for tests, the time of the
/// ManualClock alive, else the fixed moment $MIRAGE_TEST_NOW names (e.g. 2026-01-05T10:00:00Z).
int64_t now_ns();

/// A clock a test sets and advances: while one exists, now_ns() reads it (one at a time,
/// in the whole process; creating a second throws Error(precondition)).
class ManualClock {
 public:
  explicit ManualClock(int64_t start_ns);
  ~ManualClock();
  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;
  void advance(int64_t ns) { m_now += ns; }
  void set(int64_t ns) { m_now = ns; }
  int64_t now() const { return m_now; }

 private:
  std::atomic<int64_t> m_now;
};
/// RFC 3339 in UTC with second precision: 2026-11-25T10:00:00Z.
std::string rfc3339(int64_t ns);
/// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS][Z]" or with a space for T, as UTC;
/// returns ns since the epoch of the end of that moment's precision (a date means the
/// whole day, so "latest snapshot at or before" includes that day). nullopt if malformed.
std::optional<int64_t> parse_time_upper(std::string_view text);
/// The first nanosecond of the same period (for "since").
std::optional<int64_t> parse_time_lower(std::string_view text);
/// A length of time as a count and a unit: "90s", "30m" (minutes, as systemd and Go
/// read m), "2h", "3d", "1w"; ns. nullopt if malformed, zero or past ten years.
std::optional<int64_t> parse_duration(std::string_view text);
/// The moment a time spec names, as "at or before" reads it: what parse_time_upper
/// takes, "now"/"today" (`now`), "yesterday" (its last ns: the whole UTC day, as a date
/// is) or a duration ago ("2h": `now` minus two hours). nullopt if none of these.
std::optional<int64_t> parse_time_before(std::string_view text, int64_t now);
/// The same specs as a lower bound ("at or after", find --newer): what parse_time_lower
/// takes (a date from its first ns), "now" (`now`), "today" and "yesterday" (their first
/// ns, UTC) or a duration ago. nullopt if none of these.
std::optional<int64_t> parse_time_after(std::string_view text, int64_t now);

}  // namespace mirage::util

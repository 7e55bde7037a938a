#include "libmirage/util/clock.hpp"

#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "libmirage/util/error.hpp"

namespace mirage::util {

namespace {
std::atomic<ManualClock*> g_manual{nullptr};
}

ManualClock::ManualClock(int64_t start_ns) : m_now(start_ns) {
  ManualClock* none = nullptr;
  if (!g_manual.compare_exchange_strong(none, this)) throw Error(ErrorKind::precondition, "a manual clock is already set");
}

ManualClock::~ManualClock() { g_manual = nullptr; }

int64_t now_ns() {
  if (ManualClock* manual = g_manual.load()) return manual->now();
  // Tests of time-based rules (retention, GC grace) run on a fake clock.
  static const std::optional<int64_t> fake = [] {
    const char* v = std::getenv("MIRAGE_TEST_NOW");
    return v && *v ? parse_time_lower(v) : std::nullopt;
  }();
  if (fake) return *fake;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string rfc3339(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}

namespace {

/// The first ns of the period `text` names, and the period's length in seconds.
std::optional<std::pair<int64_t, int64_t>> parse_period(std::string_view text) {
  std::string s(text);
  tm t{};
  int n = 0;
  int64_t span = 0;
  if (sscanf(s.c_str(), "%4d-%2d-%2d%n", &t.tm_year, &t.tm_mon, &t.tm_mday, &n) == 3 && size_t(n) == s.size()) {
    span = 86400;
  } else if (n = 0; sscanf(s.c_str(), "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &t.tm_year, &t.tm_mon, &t.tm_mday,
                            &t.tm_hour, &t.tm_min, &t.tm_sec, &n) == 6 &&
                     (size_t(n) == s.size() || (size_t(n) + 1 == s.size() && s.back() == 'Z'))) {
    span = 1;
  } else if (n = 0; sscanf(s.c_str(), "%4d-%2d-%2d%*1[T ]%2d:%2d%n", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour,
                            &t.tm_min, &n) == 5 &&
                     (size_t(n) == s.size() || (size_t(n) + 1 == s.size() && s.back() == 'Z'))) {
    span = 60;
  } else {
    return std::nullopt;
  }
  if (t.tm_mon < 1 || t.tm_mon > 12 || t.tm_mday < 1 || t.tm_mday > 31 || t.tm_hour > 23 || t.tm_min > 59 ||
      t.tm_sec > 60)
    return std::nullopt;
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  time_t secs = timegm(&t);
  return std::make_pair(int64_t(secs) * 1000000000, span);
}

}  // namespace

std::optional<int64_t> parse_time_upper(std::string_view text) {
  auto p = parse_period(text);
  if (!p) return std::nullopt;
  return p->first + p->second * 1000000000 - 1;
}

std::optional<int64_t> parse_time_lower(std::string_view text) {
  auto p = parse_period(text);
  if (!p) return std::nullopt;
  return p->first;
}

std::optional<int64_t> parse_duration(std::string_view text) {
  constexpr int64_t k_second = 1000000000;
  constexpr int64_t k_max = int64_t(3653) * 86400 * k_second;  // ten years: a typo past that is not meant
  size_t digits = 0;
  while (digits < text.size() && digits < 12 && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits + 1 != text.size()) return std::nullopt;
  int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = k_second; break;
    case 'm': unit = 60 * k_second; break;
    case 'h': unit = 3600 * k_second; break;
    case 'd': unit = 86400 * k_second; break;
    case 'w': unit = 7 * 86400 * k_second; break;
    default: return std::nullopt;
  }
  int64_t count = std::stoll(std::string(text.substr(0, digits)));
  if (count == 0 || count > k_max / unit) return std::nullopt;
  return count * unit;
}

std::optional<int64_t> parse_time_before(std::string_view text, int64_t now) {
  constexpr int64_t k_day = int64_t(86400) * 1000000000;
  if (text == "now" || text == "today") return now;
  if (text == "yesterday") return now - now % k_day - 1;  // the end of the day before today (UTC)
  if (auto ago = parse_duration(text)) return now - *ago;
  return parse_time_upper(text);
}

std::optional<int64_t> parse_time_after(std::string_view text, int64_t now) {
  constexpr int64_t k_day = int64_t(86400) * 1000000000;
  if (text == "now") return now;
  if (text == "today") return now - now % k_day;
  if (text == "yesterday") return now - now % k_day - k_day;
  if (auto ago = parse_duration(text)) return now - *ago;
  return parse_time_lower(text);
}

}  // namespace mirage::util

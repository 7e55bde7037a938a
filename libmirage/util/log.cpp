#include "libmirage/util/log.hpp"

#include <atomic>
#include <mutex>

namespace mirage::util {

namespace {
LogSink& sink() {
  static LogSink s;
  return s;
}
std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}
std::atomic<LogLevel> g_level{LogLevel::info};
}  // namespace

void set_log_sink(LogSink s) { sink() = std::move(s); }

void set_log_level(LogLevel level) { g_level = level; }

bool log_enabled(LogLevel level) { return level == LogLevel::progress || level >= g_level.load(std::memory_order_relaxed); }

void log(LogLevel level, std::string_view message) {
  if (!log_enabled(level)) return;
  std::lock_guard lock(sink_mutex());
  if (sink()) sink()(level, message);
}

}  // namespace mirage::util

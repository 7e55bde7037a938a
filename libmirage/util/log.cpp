#include "libmirage/util/log.hpp"

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
}  // namespace

void set_log_sink(LogSink s) { sink() = std::move(s); }

void log(LogLevel level, std::string_view message) {
  std::lock_guard lock(sink_mutex());
  if (sink()) sink()(level, message);
}

}  // namespace mirage::util

#pragma once
// libmirage never prints: messages go to a sink the executable installs.
#include <functional>
#include <string_view>

namespace mirage::util {

/// progress: a transient status line ("" clears it); sinks show it only on a terminal.
enum class LogLevel { debug, info, warning, error, progress };
using LogSink = std::function<void(LogLevel, std::string_view)>;

/// Installs the process-wide sink (nullptr drops messages). Not thread-safe to call
/// while other threads log; set it once at start-up.
void set_log_sink(LogSink sink);
/// Messages below `level` are dropped before they reach the sink (progress never is);
/// the default is info.
void set_log_level(LogLevel level);
/// Whether a message of `level` would reach the sink: check it before building a costly one.
bool log_enabled(LogLevel level);
void log(LogLevel level, std::string_view message);
inline void warn(std::string_view message) { log(LogLevel::warning, message); }

}  // namespace mirage::util

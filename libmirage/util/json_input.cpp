#include "libmirage/util/json_input.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::util {

namespace {

/// What `fd` gives until its end; throws Error(usage) once it gives more than `max` bytes.
std::string read_bounded(int fd, size_t max, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + what);
    }
    if (n == 0) return out;
    if (static_cast<size_t>(n) > max - out.size())
      throw Error(ErrorKind::usage, what + ": larger than " + std::to_string(max) + " bytes");
    out.append(buf, static_cast<size_t>(n));
  }
}

/// "line L, column C (byte B)" of the 1-based byte offset `byte` in `text`.
std::string position(const std::string& text, size_t byte) {
  size_t end = std::min(byte > 0 ? byte - 1 : 0, text.size());
  size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(end), '\n'));
  size_t nl = text.rfind('\n', end > 0 ? end - 1 : 0);
  size_t column = nl == std::string::npos || end == 0 ? end + 1 : end - nl;
  return "line " + std::to_string(line) + ", column " + std::to_string(column) + " (byte " + std::to_string(byte) + ")";
}

}  // namespace

nlohmann::json read_json_input(const std::string& source, const std::string& what, size_t max_bytes) {
  std::string text;
  if (source == "-") {
    text = read_bounded(0, max_bytes, what + " - (stdin)");
  } else {
    try {
      Fd fd(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) throw_errno("read " + source);
      text = read_bounded(fd.get(), max_bytes, what + " " + source);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::usage) throw;
      rethrow_with_context(what);
    }
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string detail = e.what();
    // nlohmann's text: "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error ..."
    if (auto colon = detail.find(": "); colon != std::string::npos) detail = detail.substr(colon + 2);
    throw Error(ErrorKind::usage, what + " " + (source == "-" ? std::string("- (stdin)") : source) +
                                      ": not valid JSON at " + position(text, e.byte) + ": " + detail);
  }
}

}  // namespace mirage::util

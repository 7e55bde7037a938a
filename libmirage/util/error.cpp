#include "libmirage/util/error.hpp"

#include <cerrno>
#include <cstring>

namespace mirage {

std::string_view kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::failed: return "failed";
    case ErrorKind::usage: return "usage";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::permission: return "permission";
    case ErrorKind::precondition: return "precondition";
    case ErrorKind::integrity: return "integrity";
    case ErrorKind::unavailable: return "unavailable";
  }
  return "failed";
}

ErrorKind kind_from_name(std::string_view name) {
  for (auto kind : {ErrorKind::usage, ErrorKind::not_found, ErrorKind::permission, ErrorKind::precondition,
                    ErrorKind::integrity, ErrorKind::unavailable}) {
    if (kind_name(kind) == name) return kind;
  }
  return ErrorKind::failed;
}

void throw_errno(ErrorKind kind, const std::string& context) {
  throw Error(kind, context + ": " + std::strerror(errno));
}

void throw_errno(const std::string& context) {
  int err = errno;
  ErrorKind kind = ErrorKind::failed;
  if (err == ENOENT || err == ENOTDIR) kind = ErrorKind::not_found;
  if (err == EACCES || err == EPERM) kind = ErrorKind::permission;
  throw Error(kind, context + ": " + std::strerror(err));
}

void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (const Error& e) {
    throw Error(e.kind(), context + ": " + e.what(), e.reason());
  } catch (const std::exception& e) {
    throw Error(ErrorKind::failed, context + ": " + e.what());
  }
}

}  // namespace mirage

#pragma once
// The one error type of libmirage. Its kind maps one to one onto the exit codes
// of every tool (DESIGN.md section 3).
#include <stdexcept>
#include <string>
#include <string_view>

namespace mirage {

enum class ErrorKind {
  failed = 1,
  usage = 2,
  not_found = 3,
  permission = 4,
  precondition = 5,
  integrity = 6,
  unavailable = 75,
};

/// Name used in JSON error objects ("not_found", "integrity", ...).
std::string_view kind_name(ErrorKind kind);
/// Inverse of kind_name; unknown names map to failed.
ErrorKind kind_from_name(std::string_view name);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), m_kind(kind) {}
  /// With a reason: a short fixed word that refines the kind for a caller that must
  /// tell one refusal from another (e.g. "incomplete"); replies carry it as the error's
  /// "reason". Decisions read the kind and the reason, never the message.
  Error(ErrorKind kind, const std::string& message, std::string reason)
      : std::runtime_error(message), m_kind(kind), m_reason(std::move(reason)) {}
  ErrorKind kind() const { return m_kind; }
  int exit_code() const { return static_cast<int>(m_kind); }
  /// The reason given when thrown; empty when none.
  const std::string& reason() const { return m_reason; }

 private:
  ErrorKind m_kind;
  std::string m_reason;
};

/// Throws Error(kind, "context: strerror(errno)").
[[noreturn]] void throw_errno(ErrorKind kind, const std::string& context);
/// As above with kind failed, except ENOENT -> not_found, EACCES/EPERM -> permission.
[[noreturn]] void throw_errno(const std::string& context);

/// Rethrows the current exception with "context: " prefixed, keeping its kind and reason.
[[noreturn]] void rethrow_with_context(const std::string& context);

}  // namespace mirage

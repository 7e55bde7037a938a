#pragma once
// The method registry: one row per method the server answers, read by everything that
// needs to know about methods. Service::handle finds the row, checks the caller against
// it (roles, device credential, anonymous), takes the row's lock class, parses the
// params into the method's struct and runs it, then writes the audit event when the
// row says so; the HTTP layer reads the body limit from it before the body arrives;
// /metrics labels only the names it has; `mirage-serverd methods` prints it, and the
// role matrix in man mirage-serverd is that output (tests/e2e/man-role-matrix.sh).
//
// Roles: admin may call everything; image-manager manages layers, captures, reference
// devices and assignments; protection-manager upload policies and device acceptance;
// helpdesk views, restores, enforces and reverts devices (so do admin and protection-manager:
// order.revert). A device's credential reaches only the rows
// marked for devices, on its own CVD; without a token only the anonymous rows.
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/server/kinds.hpp"
#include "libmirage/server/limits.hpp"

namespace mirage::server {

struct Caller;
struct Context;

/// A set of token roles.
class RoleSet {
 public:
  constexpr RoleSet(std::initializer_list<Role> roles) {
    for (Role r : roles) m_bits = static_cast<uint8_t>(m_bits | bit(r));
  }
  constexpr bool has(Role r) const { return (m_bits & bit(r)) != 0; }
  std::vector<Role> list() const;

 private:
  static constexpr uint8_t bit(Role r) { return static_cast<uint8_t>(1u << static_cast<unsigned>(r)); }
  uint8_t m_bits = 0;
};


/// What a method must not run beside: `parallel` methods read, or write only what
/// is theirs (an upload's own pack), and take no lock; `device` methods change one
/// device's CVD and are serialized with that device's other `device` requests;
/// `fleet` methods change fleet-wide state and are serialized with each other.
enum class Concurrency { parallel, device, fleet };
/// Whether a call goes to the audit journal (who, with which role, the method and its
/// parameters): the methods that change what admins manage.
enum class Audit { no, yes, unless_dry_run };
/// Whether a caller without a token may call it.
enum class Anonymous { no, yes };
/// Whether an accepted device may call it with its own credential (on its own CVD).
enum class ForDevice { no, yes };

/// Who may call a method, perhaps depending on its parameters: the first Access of a
/// row whose `applies` holds (none: always) gives the roles.
struct Access {
  const char* when;  ///< the case, as the man page shows it ("" for every call)
  bool (*applies)(const nlohmann::json& params);
  RoleSet roles;
  ForDevice device = ForDevice::yes;  ///< no: a device may not take this case even if the row allows devices
};

struct Method {
  std::string_view name;
  std::vector<Access> access;
  ForDevice device;
  Anonymous anonymous;
  Audit audit;
  Concurrency concurrency;
  uint64_t Limits::*body;  ///< its body limit (authenticated callers)
  /// Parses `params` into the method's struct and runs it, setting the reply's result
  /// from its reply struct.
  void (*run)(Context& context, const nlohmann::json& params, nlohmann::json& result);
};

/// Every method, in the order the man page lists them.
std::span<const Method> methods();
/// The row of `name`, or nullptr for a method the server does not have.
const Method* find_method(std::string_view name);

/// Throws Error(permission) naming the method and the roles that may call it, when
/// `caller` may not call `method` with these params.
void check_access(const Method& method, const nlohmann::json& params, const Caller& caller);
/// True when this call is written to the audit journal.
bool audited(const Method& method, const nlohmann::json& params);

/// The rows as `mirage-serverd methods --output json` prints them: one per method and
/// access case, with its roles, device and anonymous access, audit, concurrency, body
/// limit (by its --limit name).
nlohmann::json method_table();

std::string_view concurrency_name(Concurrency c);

}  // namespace mirage::server

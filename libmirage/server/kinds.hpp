#pragma once
// The server's closed vocabularies as enums: who calls (Role), what an order asks
// (OrderKind) and where it stands (OrderState). On the wire and in the catalog they are
// the strings name() gives (the catalog's columns keep them as text); parse() and
// from_json refuse any other string with Error(usage) naming what was expected.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace mirage::server {

/// Who calls: the four roles a token may have, then an accepted device (its own
/// credential) and a caller without a token. The local user over stdio is admin.
enum class Role : uint8_t { admin, image_manager, protection_manager, helpdesk, device, anonymous };
/// What an order asks of its device: layers to apply (assign: base and apps; enforce:
/// the layers it has, again; provision: a base, user apps removed, a new CVD), a
/// snapshot now, a revert to one of its snapshots, or an OS migration to a new base.
enum class OrderKind : uint8_t { assign, enforce, provision, snapshot, revert, migrate };
/// What a revert puts back: the machine area (system, the default: the user area stays
/// as it is), everything (full: what the snapshot lacks is removed too), or the user
/// area only (user-data). The unprotected area is never touched.
enum class RevertMode : uint8_t { system, full, user_data };
/// pending until the device reports done or failed, or a newer order supersedes it.
enum class OrderState : uint8_t { pending, done, failed, superseded };

template <class E>
struct EnumNames;  ///< per enum: `static constexpr std::array<std::pair<E, const char*>, N> names`, `what`

template <>
struct EnumNames<Role> {
  static constexpr const char* what = "role";
  static constexpr std::array<std::pair<Role, const char*>, 6> names = {{{Role::admin, "admin"},
                                                                         {Role::image_manager, "image-manager"},
                                                                         {Role::protection_manager, "protection-manager"},
                                                                         {Role::helpdesk, "helpdesk"},
                                                                         {Role::device, "device"},
                                                                         {Role::anonymous, "anonymous"}}};
};
template <>
struct EnumNames<OrderKind> {
  static constexpr const char* what = "order type";
  static constexpr std::array<std::pair<OrderKind, const char*>, 6> names = {{{OrderKind::assign, "assign"},
                                                                              {OrderKind::enforce, "enforce"},
                                                                              {OrderKind::provision, "provision"},
                                                                              {OrderKind::snapshot, "snapshot"},
                                                                              {OrderKind::revert, "revert"},
                                                                              {OrderKind::migrate, "migrate"}}};
};
template <>
struct EnumNames<RevertMode> {
  static constexpr const char* what = "revert mode";
  static constexpr std::array<std::pair<RevertMode, const char*>, 3> names = {
      {{RevertMode::system, "system"}, {RevertMode::full, "full"}, {RevertMode::user_data, "user-data"}}};
};
template <>
struct EnumNames<OrderState> {
  static constexpr const char* what = "order state";
  static constexpr std::array<std::pair<OrderState, const char*>, 4> names = {{{OrderState::pending, "pending"},
                                                                               {OrderState::done, "done"},
                                                                               {OrderState::failed, "failed"},
                                                                               {OrderState::superseded, "superseded"}}};
};

/// The wire and catalog name of `value`.
template <class E>
std::string name(E value) {
  for (const auto& [v, n] : EnumNames<E>::names)
    if (v == value) return n;
  return "?";
}

/// "a, b or c": the names, for messages.
template <class E>
std::string name_list() {
  std::string out;
  const auto& names = EnumNames<E>::names;
  for (size_t i = 0; i < names.size(); ++i) out += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i].second;
  return out;
}

/// The value named `text`; Error(usage) "WHAT 'TEXT': expected ..." for any other.
template <class E>
E parse(std::string_view text);

/// True for the roles a token may be given (not device or anonymous).
constexpr bool token_role(Role r) { return r != Role::device && r != Role::anonymous; }

void to_json(nlohmann::json& j, Role r);
void from_json(const nlohmann::json& j, Role& r);
void to_json(nlohmann::json& j, OrderKind k);
void from_json(const nlohmann::json& j, OrderKind& k);
void to_json(nlohmann::json& j, OrderState s);
void from_json(const nlohmann::json& j, OrderState& s);
void to_json(nlohmann::json& j, RevertMode m);
void from_json(const nlohmann::json& j, RevertMode& m);

}  // namespace mirage::server

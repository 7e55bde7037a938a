#include "libmirage/server/kinds.hpp"

#include "libmirage/util/error.hpp"

namespace mirage::server {

template <class E>
E parse(std::string_view text) {
  for (const auto& [v, n] : EnumNames<E>::names)
    if (text == n) return v;
  std::string shown(text.substr(0, 100));
  for (char& c : shown)
    if (c < 0x20 || c > 0x7e) c = '?';
  throw Error(ErrorKind::usage, std::string(EnumNames<E>::what) + " '" + shown + "': expected " + name_list<E>());
}

template Role parse<Role>(std::string_view);
template OrderKind parse<OrderKind>(std::string_view);
template OrderState parse<OrderState>(std::string_view);
template RevertMode parse<RevertMode>(std::string_view);

namespace {

template <class E>
void read(const nlohmann::json& j, E& out) {
  if (!j.is_string()) throw Error(ErrorKind::usage, std::string(EnumNames<E>::what) + ": expected a string, one of " + name_list<E>());
  out = parse<E>(j.get_ref<const std::string&>());
}

}  // namespace

void to_json(nlohmann::json& j, Role r) { j = name(r); }
void from_json(const nlohmann::json& j, Role& r) { read(j, r); }
void to_json(nlohmann::json& j, OrderKind k) { j = name(k); }
void from_json(const nlohmann::json& j, OrderKind& k) { read(j, k); }
void to_json(nlohmann::json& j, OrderState s) { j = name(s); }
void from_json(const nlohmann::json& j, OrderState& s) { read(j, s); }
void to_json(nlohmann::json& j, RevertMode m) { j = name(m); }
void from_json(const nlohmann::json& j, RevertMode& m) { read(j, m); }

}  // namespace mirage::server

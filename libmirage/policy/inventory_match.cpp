#include "libmirage/policy/inventory_match.hpp"

#include <fnmatch.h>

namespace mirage::policy {

namespace {
bool value_matches(const nlohmann::json& v, const std::string& glob) {
  if (v.is_array()) {
    for (const auto& e : v)
      if (!e.is_array() && value_matches(e, glob)) return true;
    return false;
  }
  if (v.is_null() || v.is_object()) return false;
  std::string text = v.is_string() ? v.get<std::string>() : v.dump();
  return ::fnmatch(glob.c_str(), text.c_str(), 0) == 0;
}
}  // namespace

bool inventory_matches(const nlohmann::json& inventory, const std::string& field, const std::string& glob) {
  if (!inventory.is_object()) return false;
  auto it = inventory.find(field);
  return it != inventory.end() && value_matches(*it, glob);
}

}  // namespace mirage::policy

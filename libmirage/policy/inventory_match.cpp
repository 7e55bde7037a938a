#include "libmirage/policy/inventory_match.hpp"

#include <fnmatch.h>

#include <algorithm>

#include "libmirage/util/error.hpp"

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

void check_inventory_key(const std::string& key, const std::string& what) {
  if (std::any_of(std::begin(k_inventory_keys), std::end(k_inventory_keys), [&](const char* k) { return key == k; })) return;
  std::string known;
  for (const char* k : k_inventory_keys) known += (known.empty() ? "" : ", ") + std::string(k);
  throw Error(ErrorKind::usage, what + ": unknown inventory key '" + key + "' (known: " + known + ")");
}

bool inventory_matches(const nlohmann::json& inventory, const std::string& field, const std::string& glob) {
  if (!inventory.is_object()) return false;
  auto it = inventory.find(field);
  return it != inventory.end() && value_matches(*it, glob);
}

}  // namespace mirage::policy

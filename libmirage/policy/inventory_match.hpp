#pragma once
// The one inventory matcher: how a driver profile's match rules and a dynamic
// collection's inventory conditions read a device's inventory (endpoint::inventory).
#include <string>

#include <nlohmann/json.hpp>

namespace mirage::policy {

/// The fields an endpoint's inventory has (endpoint::inventory): what a match may name.
inline constexpr const char* k_inventory_keys[] = {"arch",        "os_id",        "os_version",      "os_name",
                                                   "sys_vendor",  "product_name", "product_version", "pci"};

/// Throws Error(usage) for a key no inventory has, naming `what` and listing the known keys.
void check_inventory_key(const std::string& key, const std::string& what);

/// True when the inventory field `field` matches the glob (fnmatch): a string by its
/// text, a number or boolean by its JSON text, an array when any element does (so
/// pci=10de:* finds one device among many). A missing field (or null) matches nothing.
bool inventory_matches(const nlohmann::json& inventory, const std::string& field, const std::string& glob);

}  // namespace mirage::policy

#pragma once
// The one inventory matcher: how a driver profile's match rules and a dynamic
// collection's inventory conditions read a device's inventory (endpoint::inventory).
#include <string>

#include <nlohmann/json.hpp>

namespace mirage::policy {

/// True when the inventory field `field` matches the glob (fnmatch): a string by its
/// text, a number or boolean by its JSON text, an array when any element does (so
/// pci=10de:* finds one device among many). A missing field (or null) matches nothing.
bool inventory_matches(const nlohmann::json& inventory, const std::string& field, const std::string& glob);

}  // namespace mirage::policy

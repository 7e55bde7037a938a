#include <doctest/doctest.h>

#include "libmirage/policy/inventory_match.hpp"

using mirage::policy::inventory_matches;
using nlohmann::json;

TEST_CASE("one inventory matcher: strings, numbers, arrays by any element, missing fields never") {
  json inv = {{"sys_vendor", "LENOVO"}, {"pci", {"8086:1234", "10de:abcd"}}, {"cores", 8}, {"none", nullptr}};
  CHECK(inventory_matches(inv, "sys_vendor", "LEN*"));
  CHECK_FALSE(inventory_matches(inv, "sys_vendor", "Dell*"));
  CHECK(inventory_matches(inv, "pci", "10de:*"));
  CHECK(inventory_matches(inv, "pci", "8086:1234"));
  CHECK_FALSE(inventory_matches(inv, "pci", "1002:*"));
  CHECK_FALSE(inventory_matches(inv, "pci", "[\"8086*"));  // never the array's JSON text
  CHECK(inventory_matches(inv, "cores", "8"));
  CHECK_FALSE(inventory_matches(inv, "missing", "*"));
  CHECK_FALSE(inventory_matches(inv, "none", "*"));
  CHECK_FALSE(inventory_matches(json::array(), "pci", "*"));
}

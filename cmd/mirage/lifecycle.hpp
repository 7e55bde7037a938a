#pragma once
// mirage's fleet-care commands (lifecycle.cpp): the device table, device rename,
// snapshot forget, layer delete.
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cmd/common/tool.hpp"

namespace mirage::lifecycle {

/// "42s", "5m", "3h", "2d": the largest unit that fits, rounded down.
std::string age_text(int64_t seconds);
/// device.list's devices as an aligned table with a header ("no devices" when empty).
void print_device_table(std::ostream& out, const nlohmann::json& devices);
/// Adds `device rename`, `snapshot forget` and `layer delete` to `app` (and its `device`
/// command); returns what they run.
std::vector<tool::Command> add_commands(CLI::App& app, CLI::App& device, tool::Common& common);

}  // namespace mirage::lifecycle

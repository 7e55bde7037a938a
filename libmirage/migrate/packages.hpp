#pragma once
// Which of an endpoint's packages the user chose. A package the endpoint has and the new
// base has not is either the user's (installed again from the new release by apt) or the
// old release's: the new base's own packages and their dependencies replace it. Debian 13
// renamed many of bookworm's libraries (the 64-bit time_t transition: libssl3 became
// libssl3t64; libapt-pkg6.0 became libapt-pkg7.0), so asking apt for the old release's
// names would fail for packages nobody chose.
//
// A package is the user's choice when it is installed and none of:
//   - in the device's old base layer (the base it was given);
//   - marked automatically installed by apt (/var/lib/apt/extended_states);
//   - of Priority required or important (the release's own, as debootstrap installs it);
//   - a dependency (Depends or Pre-Depends, directly or through what it Provides) of
//     another installed package: apt brings the new release's one with its dependent.
// The migration's preflight and its package plan both use this one rule.
#include <set>
#include <string>

#include "libmirage/layer/records.hpp"

namespace mirage::migrate {

/// The package names of dpkg status records (keys "name:arch"), every state.
std::set<std::string> package_names(const layer::RecordSet& dpkg_status);

/// Package names marked "Auto-Installed: 1" in the text of apt's extended_states.
std::set<std::string> auto_installed(const std::string& extended_states);

/// The installed packages of `dpkg_status` the user chose (the rule above).
std::set<std::string> chosen_packages(const layer::RecordSet& dpkg_status, const std::set<std::string>& auto_installed,
                                      const std::set<std::string>& old_base);

/// Where apt keeps its automatically-installed marks, root-relative.
inline constexpr const char* k_extended_states = "/var/lib/apt/extended_states";

}  // namespace mirage::migrate

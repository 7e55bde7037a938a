#pragma once
// Small helpers for the text formats read line by line (dpkg and apt files, os-release).
#include <string>
#include <string_view>
#include <vector>

namespace mirage::util {

/// `s` without leading and trailing whitespace.
std::string trim(std::string_view s);

/// The whitespace-separated words of `s`.
std::vector<std::string> words(std::string_view s);

}  // namespace mirage::util

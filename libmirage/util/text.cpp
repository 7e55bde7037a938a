#include "libmirage/util/text.hpp"

namespace mirage::util {

namespace {
constexpr std::string_view k_space = " \t\r\n\v\f";
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(k_space);
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(k_space);
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = s.find_first_not_of(k_space, i)) != std::string_view::npos) {
    size_t end = s.find_first_of(k_space, i);
    if (end == std::string_view::npos) end = s.size();
    out.emplace_back(s.substr(i, end - i));
    i = end;
  }
  return out;
}

}  // namespace mirage::util

#include "libmirage/migrate/packages.hpp"

#include <sstream>

#include "libmirage/util/text.hpp"

namespace mirage::migrate {

namespace {

using util::trim;

std::string name_of_key(const std::string& key) { return key.substr(0, key.find(':')); }

/// The package names a relationship field names: "libc6 (>= 2.34), a | b:any" gives
/// libc6, a and b (every alternative, versions and architecture qualifiers dropped).
void relation_names(std::string_view field, std::set<std::string>& out) {
  size_t start = 0;
  while (start <= field.size()) {
    size_t end = field.find_first_of(",|", start);
    if (end == std::string_view::npos) end = field.size();
    std::string part = trim(field.substr(start, end - start));
    std::string name = part.substr(0, part.find_first_of(" (\t[<"));
    if (auto colon = name.find(':'); colon != std::string::npos) name.resize(colon);
    if (!name.empty()) out.insert(name);
    start = end + 1;
  }
}

bool installed(const layer::Record& r) {
  std::string status = layer::stanza_field(r.text, "Status");
  return status.size() >= 10 && status.ends_with(" installed");
}

}  // namespace

std::set<std::string> package_names(const layer::RecordSet& dpkg_status) {
  std::set<std::string> out;
  for (const auto& r : dpkg_status) out.insert(name_of_key(r.key));
  return out;
}

std::set<std::string> auto_installed(const std::string& extended_states) {
  std::set<std::string> out;
  std::istringstream in(extended_states + "\n\n");
  std::string package;
  bool is_auto = false;
  for (std::string line; std::getline(in, line);) {
    if (trim(line).empty()) {
      if (is_auto && !package.empty()) out.insert(package);
      package.clear();
      is_auto = false;
    } else if (line.starts_with("Package:")) {
      package = trim(std::string_view(line).substr(8));
    } else if (line.starts_with("Auto-Installed:")) {
      is_auto = trim(std::string_view(line).substr(15)) == "1";
    }
  }
  return out;
}

std::set<std::string> chosen_packages(const layer::RecordSet& dpkg_status, const std::set<std::string>& auto_marked,
                                      const std::set<std::string>& old_base) {
  // What some installed package needs, by name or by what another one provides.
  std::set<std::string> needed;
  for (const auto& r : dpkg_status) {
    if (!installed(r)) continue;
    relation_names(layer::stanza_field(r.text, "Depends"), needed);
    relation_names(layer::stanza_field(r.text, "Pre-Depends"), needed);
  }
  std::set<std::string> out;
  for (const auto& r : dpkg_status) {
    std::string name = name_of_key(r.key);
    if (!installed(r) || old_base.count(name) || auto_marked.count(name) || needed.count(name)) continue;
    std::string priority = layer::stanza_field(r.text, "Priority");
    if (priority == "required" || priority == "important") continue;
    std::set<std::string> provides;
    relation_names(layer::stanza_field(r.text, "Provides"), provides);
    bool provides_needed = false;
    for (const auto& p : provides) provides_needed = provides_needed || needed.count(p);
    if (!provides_needed) out.insert(name);
  }
  return out;
}

}  // namespace mirage::migrate

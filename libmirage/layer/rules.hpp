#pragma once
// Layer rules: what a capture leaves out and what an apply never overwrites. A JSON
// document, versioned like the upload policy:
//   {"version": 1,
//    "exclude":  ["/var/log/*", ...],      // left out of every layer (rule syntax of
//                                          //  policy/upload_policy.hpp)
//    "exceptions": [...],                  // kept despite an exclude rule
//    "noise":    ["/var/lib/apt/lists", ...],  // also left out of app layers
//    "do_not_override": ["/etc/motd"],     // written only where the endpoint lacks it
//    "user_area": ["/home", "/root", "/srv"]}  // never touched (the roots themselves are
//                                          //  created when missing, never changed)
// Identity paths (hostname, machine-id, ssh host keys, fstab, …) are fixed: never in
// a layer, never written by an apply.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirage::layer {

const std::vector<std::string>& identity_rules();
bool is_identity(std::string_view path);

class LayerRules {
 public:
  static LayerRules defaults();
  /// Parses and validates; throws Error(usage) naming the bad field.
  static LayerRules from_json(const nlohmann::json& doc);
  nlohmann::json to_json() const;

  /// Left out of a base layer (identity, user-area contents, runtime state, excludes).
  bool excluded(std::string_view path) const;
  /// Left out of an app layer: what excluded() says, plus noise.
  bool noise(std::string_view path) const;
  bool do_not_override(std::string_view path) const;
  /// Strictly below a user-area root.
  bool in_user_area(std::string_view path) const;
  bool is_user_area_root(std::string_view path) const;
  const std::vector<std::string>& do_not_override_rules() const { return m_do_not_override; }

 private:
  std::vector<std::string> m_exclude, m_exceptions, m_noise, m_do_not_override, m_user_area;
};

}  // namespace mirage::layer

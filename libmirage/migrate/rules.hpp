#pragma once
// Migration rules: what an OS migration carries from the replaced system into the new
// one (USMT's job on Windows). A JSON document:
//   {"version": 1,
//    "name": "debian-12-to-13",                       // optional, shown by --explain
//    "components": [
//      {"name": "network", "action": "keep-endpoint",
//       "include": ["/etc/NetworkManager/system-connections", "/etc/network/interfaces"],
//       "exclude": ["/etc/network/interfaces.d/*.dpkg-*"],
//       "description": "..."},                         // optional
//      ...],
//    "unconditional_exclude": ["/var/cache", "/etc/ssh/ssh_host_dsa_key*"]}
// Patterns have the rule syntax of policy/upload_policy.hpp (policy::rule_matches): one
// with a '/' must start with it, is anchored at the root and also covers everything
// below a matching directory; one without a '/' matches a name at any depth.
//
// Precedence (as USMT's, learn.microsoft.com/windows/deployment/usmt/
// usmt-conflicts-and-precedence):
//  1. a matching unconditional_exclude pattern beats everything: never carried;
//  2. within one component, the most specific matching pattern decides; an exclude
//     beats an include of equal specificity (the component then does not claim it);
//  3. components do not exclude for each other: among the components that claim the
//     path, the one whose include is the most specific wins; on a tie, the component
//     earlier in the document wins;
//  4. a path no component claims is not carried (the new release's version, if any, is
//     what the migrated system has; the old one stays under /old-root/<id>/).
// Specificity of a pattern (compared field by field, greater is more specific):
//   depth:    the number of '/'-separated components of an anchored pattern ("/etc" 1,
//             "/etc/cron.d" 2, "/home/*/.ssh" 3); a bare name has depth 0, below every
//             anchored pattern (it names no place in the tree);
//   literals: the characters that are not wildcards and not '/': '*' and '?' count 0,
//             a bracket expression "[...]" counts 0, an escaped "\x" counts 1
//             ("/etc/*" 3, "/etc/cron.d" 9).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirage::migrate {

enum class Action {
  keep_endpoint,  ///< the old system's version wins
  take_new,       ///< the new release's version wins
  merge_3way,     ///< the layer apply's 3-way rules; conflicts kept as PATH.mirage-local
  merge_records,  ///< record by record, by the merge drivers (layer/records.hpp)
  keep_in_place,  ///< never moved to /old-root (the user area, /usr/local, /opt)
};
std::string_view action_name(Action a);
/// The action called `name` ("keep-endpoint"...), nullopt for any other word.
std::optional<Action> action_from_name(std::string_view name);

struct Specificity {
  uint32_t depth = 0;
  uint32_t literals = 0;
  auto operator<=>(const Specificity&) const = default;
};
/// The specificity of a pattern (see above).
Specificity specificity(std::string_view pattern);

struct Component {
  std::string name;
  Action action = Action::take_new;
  std::vector<std::string> include, exclude;
  std::string description;
};

/// How a path fares.
enum class Outcome {
  carried,        ///< a component claims it: its action applies
  excluded,       ///< only excluded by components: not carried
  unconditional,  ///< an unconditional_exclude pattern matches: never carried
  unmatched,      ///< no pattern matches: not carried
};
std::string_view outcome_name(Outcome o);

/// Why a path fares as it does: the winning pattern and, in `reason`, why it won.
struct Explanation {
  std::string path;
  Outcome outcome = Outcome::unmatched;
  std::string component;          ///< the claiming (or excluding) component; "" otherwise
  std::optional<Action> action;   ///< when carried
  std::string pattern;            ///< the pattern that decided; "" when unmatched
  std::string reason;             ///< one sentence
};
/// {path, outcome, component, action ("not-carried" unless carried), pattern, reason}.
void to_json(nlohmann::json& j, const Explanation& e);

/// Bounds on a rules document (it may come from anyone who can write a --rules file).
/// A rules document's JSON text is at most this long (--rules; migrate.start's limit).
constexpr size_t k_max_rules_bytes = 1 << 20;

struct RulesLimits {
  size_t components = 256;
  size_t patterns = 4096;          ///< in all lists together
  size_t pattern_bytes = 1024;
  size_t name_bytes = 128;
  size_t description_bytes = 4096;
};

class Rules {
 public:
  /// Parses and validates; throws Error(usage) naming the field by its path in the
  /// document ("rules: components[2].include[0]: ...").
  static Rules from_json(const nlohmann::json& doc, const RulesLimits& limits = {});
  /// The shipped Debian 12 -> 13 rules (default_rules_text()).
  static Rules defaults();
  nlohmann::json to_json() const;

  /// How `path` (root-relative, absolute: "/etc/passwd") fares, and why.
  Explanation explain(std::string_view path) const;

  const std::string& name() const { return m_name; }
  const std::vector<Component>& components() const { return m_components; }
  const std::vector<std::string>& unconditional_exclude() const { return m_unconditional; }

 private:
  std::string m_name;
  std::vector<Component> m_components;
  std::vector<std::string> m_unconditional;
};

/// The shipped default rules, as the JSON text `mirage-migrate rules --default` prints.
std::string_view default_rules_text();

}  // namespace mirage::migrate

#include "libmirage/migrate/rules.hpp"

#include <array>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::migrate {

using nlohmann::json;

namespace {

constexpr std::array<std::pair<Action, std::string_view>, 5> k_actions = {{{Action::keep_endpoint, "keep-endpoint"},
                                                                           {Action::take_new, "take-new"},
                                                                           {Action::merge_3way, "merge-3way"},
                                                                           {Action::merge_records, "merge-records"},
                                                                           {Action::keep_in_place, "keep-in-place"}}};

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw Error(ErrorKind::usage, "rules: " + where + ": " + what);
}

/// The string at doc[key] (optional), at most `max` bytes.
std::string text_field(const json& doc, const char* key, const std::string& where, size_t max, bool required) {
  std::string at = where.empty() ? key : where + "." + key;
  if (!doc.contains(key)) {
    if (required) bad(at, "missing");
    return "";
  }
  const auto& v = doc.at(key);
  if (!v.is_string()) bad(at, "must be a string");
  std::string s = v.get<std::string>();
  if (required && s.empty()) bad(at, "must not be empty");
  if (s.size() > max) bad(at, "longer than " + std::to_string(max) + " bytes");
  return s;
}

void check_pattern(const std::string& p, const std::string& at, const RulesLimits& limits) {
  if (p.empty()) bad(at, "an empty pattern");
  if (p.size() > limits.pattern_bytes) bad(at, "longer than " + std::to_string(limits.pattern_bytes) + " bytes");
  if (p.find('\0') != std::string::npos) bad(at, "holds a NUL byte");
  if (p.find('/') != std::string::npos && p[0] != '/')
    bad(at, "'" + p + "': a pattern with a '/' starts with it (anchored at the root); a bare name has none");
  if (p.size() > 1 && p.back() == '/') bad(at, "'" + p + "': no trailing '/' (a directory pattern covers what is below it)");
  for (size_t pos = 0; pos < p.size();) {
    size_t slash = p.find('/', pos + 1);
    std::string_view part = std::string_view(p).substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (part == "/" || part == "/." || part == "/.." || part == "." || part == "..")
      bad(at, "'" + p + "': empty, '.' or '..' components are not allowed");
    if (slash == std::string::npos) break;
    pos = slash;
  }
}

std::vector<std::string> pattern_list(const json& doc, const char* key, const std::string& where,
                                      const RulesLimits& limits, size_t& total) {
  std::string at = where.empty() ? key : where + "." + key;
  std::vector<std::string> out;
  if (!doc.contains(key)) return out;
  const auto& list = doc.at(key);
  if (!list.is_array()) bad(at, "must be an array of patterns");
  for (size_t i = 0; i < list.size(); ++i) {
    std::string item_at = at + "[" + std::to_string(i) + "]";
    if (!list[i].is_string()) bad(item_at, "must be a string");
    if (++total > limits.patterns) bad(item_at, "more than " + std::to_string(limits.patterns) + " patterns in the document");
    out.push_back(list[i].get<std::string>());
    check_pattern(out.back(), item_at, limits);
  }
  return out;
}

Component parse_component(const json& c, const std::string& at, const RulesLimits& limits, size_t& total) {
  if (!c.is_object()) bad(at, "must be an object");
  for (const auto& [key, value] : c.items()) {
    (void)value;
    if (key != "name" && key != "action" && key != "include" && key != "exclude" && key != "description")
      bad(at + "." + key, "unknown field (name, action, include, exclude, description)");
  }
  Component comp;
  comp.name = text_field(c, "name", at, limits.name_bytes, true);
  std::string action = text_field(c, "action", at, 64, true);
  auto a = action_from_name(action);
  if (!a) bad(at + ".action", "'" + action + "' is not one of keep-endpoint, take-new, merge-3way, merge-records, keep-in-place");
  comp.action = *a;
  comp.include = pattern_list(c, "include", at, limits, total);
  comp.exclude = pattern_list(c, "exclude", at, limits, total);
  if (comp.include.empty()) bad(at + ".include", "a component includes at least one pattern");
  comp.description = text_field(c, "description", at, limits.description_bytes, false);
  return comp;
}

/// The most specific of `patterns` matching `path`, or nullptr.
const std::string* best_match(const std::vector<std::string>& patterns, std::string_view path, Specificity& spec) {
  const std::string* best = nullptr;
  for (const auto& p : patterns) {
    if (!policy::rule_matches(p, path)) continue;
    Specificity s = specificity(p);
    if (!best || s > spec) {
      best = &p;
      spec = s;
    }
  }
  return best;
}

std::string describe(const std::string& pattern, Specificity s) {
  return "'" + pattern + "' (depth " + std::to_string(s.depth) + ", " + std::to_string(s.literals) + " literal characters)";
}

/// One component's verdict on a path.
struct Verdict {
  size_t index = 0;
  const std::string* include = nullptr;
  const std::string* exclude = nullptr;
  Specificity include_spec, exclude_spec;
  bool claims() const { return include && (!exclude || include_spec > exclude_spec); }
};

std::string claim_reason(const Component& c, const Verdict& v) {
  std::string r = "component '" + c.name + "' includes it by " + describe(*v.include, v.include_spec);
  if (v.exclude) r += ", more specific than its exclude " + describe(*v.exclude, v.exclude_spec);
  return r;
}

}  // namespace

std::string_view action_name(Action a) {
  for (const auto& [action, name] : k_actions)
    if (action == a) return name;
  return "?";
}

std::optional<Action> action_from_name(std::string_view name) {
  for (const auto& [action, n] : k_actions)
    if (n == name) return action;
  return std::nullopt;
}

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::carried: return "carried";
    case Outcome::excluded: return "excluded";
    case Outcome::unconditional: return "unconditional-exclude";
    case Outcome::unmatched: return "unmatched";
  }
  return "?";
}

Specificity specificity(std::string_view pattern) {
  Specificity s;
  bool anchored = !pattern.empty() && pattern[0] == '/';
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '/') {
      if (i + 1 < pattern.size()) ++s.depth;
    } else if (c == '\\' && i + 1 < pattern.size()) {
      ++i;
      ++s.literals;
    } else if (c == '[') {
      // A bracket expression up to its closing ']' (a ']' first in it is a member); an
      // unclosed '[' is an ordinary character to fnmatch.
      size_t j = i + 1;
      if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) ++j;
      if (j < pattern.size() && pattern[j] == ']') ++j;
      while (j < pattern.size() && pattern[j] != ']') ++j;
      if (j < pattern.size())
        i = j;
      else
        ++s.literals;
    } else if (c != '*' && c != '?') {
      ++s.literals;
    }
  }
  if (!anchored) s.depth = 0;
  return s;
}

void to_json(json& j, const Explanation& e) {
  j = {{"path", e.path},
       {"outcome", outcome_name(e.outcome)},
       {"component", e.component},
       {"action", e.action ? action_name(*e.action) : "not-carried"},
       {"pattern", e.pattern},
       {"reason", e.reason}};
}

Rules Rules::from_json(const json& doc, const RulesLimits& limits) {
  if (!doc.is_object()) throw Error(ErrorKind::usage, "rules: the document must be a JSON object");
  for (const auto& [key, value] : doc.items()) {
    (void)value;
    if (key != "version" && key != "name" && key != "components" && key != "unconditional_exclude" && key != "description")
      bad(key, "unknown field (version, name, description, components, unconditional_exclude)");
  }
  if (!doc.contains("version")) bad("version", "missing (1)");
  if (const auto& v = doc.at("version"); v != 1)  // a nested value is not dumped (deep: a deep recursion)
    bad("version", "unsupported version " + (v.is_primitive() ? v.dump().substr(0, 64) : std::string(v.type_name())) + " (1)");
  Rules r;
  r.m_name = text_field(doc, "name", "", limits.name_bytes, false);
  text_field(doc, "description", "", limits.description_bytes, false);
  if (!doc.contains("components")) bad("components", "missing");
  const auto& comps = doc.at("components");
  if (!comps.is_array()) bad("components", "must be an array of components");
  if (comps.size() > limits.components) bad("components", "more than " + std::to_string(limits.components) + " components");
  size_t total = 0;
  for (size_t i = 0; i < comps.size(); ++i) {
    std::string at = "components[" + std::to_string(i) + "]";
    r.m_components.push_back(parse_component(comps[i], at, limits, total));
    for (size_t k = 0; k < i; ++k)
      if (r.m_components[k].name == r.m_components.back().name)
        bad(at + ".name", "'" + r.m_components.back().name + "' is also components[" + std::to_string(k) + "]'s name");
  }
  r.m_unconditional = pattern_list(doc, "unconditional_exclude", "", limits, total);
  return r;
}

Rules Rules::defaults() {
  static const Rules rules = from_json(json::parse(default_rules_text()));
  return rules;
}

json Rules::to_json() const {
  json comps = json::array();
  for (const auto& c : m_components) {
    json j = {{"name", c.name}, {"action", action_name(c.action)}, {"include", c.include}, {"exclude", c.exclude}};
    if (!c.description.empty()) j["description"] = c.description;
    comps.push_back(std::move(j));
  }
  json doc = {{"version", 1}, {"components", comps}, {"unconditional_exclude", m_unconditional}};
  if (!m_name.empty()) doc["name"] = m_name;
  return doc;
}

Explanation Rules::explain(std::string_view path) const {
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string_view::npos)
    throw Error(ErrorKind::usage, "'" + std::string(path) + "': give an absolute path (\"/etc/passwd\")");
  Explanation e;
  e.path = std::string(path);
  Specificity spec;
  if (const auto* p = best_match(m_unconditional, path, spec)) {
    e.outcome = Outcome::unconditional;
    e.pattern = *p;
    e.reason = "unconditional_exclude " + describe(*p, spec) + " matches: never carried, whatever a component says";
    return e;
  }
  // (Plain values with a flag, not std::optional: GCC 12 warns of a maybe-uninitialized member.)
  Verdict winner, tied, excluder;
  bool has_winner = false, has_tied = false, has_excluder = false;
  for (size_t i = 0; i < m_components.size(); ++i) {
    Verdict v;
    v.index = i;
    v.include = best_match(m_components[i].include, path, v.include_spec);
    v.exclude = best_match(m_components[i].exclude, path, v.exclude_spec);
    if (v.claims()) {
      if (!has_winner || v.include_spec > winner.include_spec) {
        winner = v;
        has_winner = true;
        has_tied = false;
      } else if (v.include_spec == winner.include_spec && !has_tied) {
        tied = v;
        has_tied = true;
      }
    } else if (v.exclude && (!has_excluder || v.exclude_spec > excluder.exclude_spec)) {
      excluder = v;
      has_excluder = true;
    }
  }
  if (has_winner) {
    const auto& c = m_components[winner.index];
    e.outcome = Outcome::carried;
    e.component = c.name;
    e.action = c.action;
    e.pattern = *winner.include;
    e.reason = claim_reason(c, winner);
    if (has_tied)
      e.reason += "; component '" + m_components[tied.index].name + "' includes it as specifically by '" + *tied.include +
                  "': the earlier component in the document wins";
    return e;
  }
  if (has_excluder) {
    const auto& c = m_components[excluder.index];
    e.outcome = Outcome::excluded;
    e.component = c.name;
    e.pattern = *excluder.exclude;
    e.reason = "component '" + c.name + "' excludes it by " + describe(*excluder.exclude, excluder.exclude_spec);
    if (excluder.include)
      e.reason += (excluder.exclude_spec == excluder.include_spec ? ", as specific as its include " : ", more specific than its include ") +
                  describe(*excluder.include, excluder.include_spec) +
                  (excluder.exclude_spec == excluder.include_spec ? " (an exclude wins a tie)" : "");
    e.reason += "; no other component includes it: not carried";
    return e;
  }
  e.reason = "no component includes it: not carried (the new release's version, if any; the old one stays under /old-root)";
  return e;
}

}  // namespace mirage::migrate

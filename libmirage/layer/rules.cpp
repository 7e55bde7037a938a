#include "libmirage/layer/rules.hpp"

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::layer {

namespace {

bool any_matches(const std::vector<std::string>& rules, std::string_view path) {
  for (const auto& r : rules)
    if (policy::rule_matches(r, path)) return true;
  return false;
}

std::vector<std::string> list(const nlohmann::json& doc, const char* key, const std::vector<std::string>& fallback) {
  return policy::string_list(doc, key, "layer rules").value_or(fallback);
}

}  // namespace

const std::vector<std::string>& identity_rules() {
  static const std::vector<std::string> rules = {
      "/etc/hostname", "/etc/hosts",    "/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/ssh/ssh_host_*",
      "/etc/fstab",    "/etc/crypttab", "/etc/resolv.conf", "/etc/adjtime",            "/etc/mailname",
      "/var/lib/systemd/random-seed", "/var/lib/mirage", "/etc/mirage/endpoint"};
  return rules;
}

bool is_identity(std::string_view path) { return any_matches(identity_rules(), path); }

LayerRules LayerRules::defaults() { return from_json(nlohmann::json::object()); }

LayerRules LayerRules::from_json(const nlohmann::json& doc) {
  if (!doc.is_object()) throw Error(ErrorKind::usage, "layer rules: expected a JSON object");
  for (const auto& [key, value] : doc.items())
    if (key != "version" && key != "exclude" && key != "exceptions" && key != "noise" && key != "do_not_override" &&
        key != "user_area")
      throw Error(ErrorKind::usage, "layer rules: unknown field '" + key + "'");
  if (doc.contains("version") && doc["version"] != 1) throw Error(ErrorKind::usage, "layer rules: version must be 1");
  LayerRules r;
  r.m_exclude = list(doc, "exclude",
                     {"/proc/*", "/sys/*", "/dev/*", "/run/*", "/tmp/*", "/var/tmp/*", "/var/cache/*", "lost+found",
                      "/var/log/*", "/var/backups/*", "/var/mail/*", "/var/spool/*/*", "/swapfile", "*.mirage-local",
                      "/var/lib/systemd/timers", "/var/lib/systemd/catalog", "/var/lib/systemd/coredump/*"});
  r.m_exceptions = list(doc, "exceptions", {});
  r.m_noise = list(doc, "noise",
                   {"/var/lib/apt/lists", "/var/lib/apt/extended_states", "/var/lib/dpkg/status-old",
                    "/var/lib/dpkg/diversions-old", "/var/lib/dpkg/lock*", "/var/lib/dpkg/triggers/Lock",
                    "/var/lib/dpkg/triggers/Unincorp", "/etc/ld.so.cache", "/etc/*-", "/var/lib/ucf/cache",
                    "/var/lib/ucf/hashfile.*", "/var/lib/ucf/registry.*", "*.dpkg-old", "*.dpkg-new", "*.dpkg-dist",
                    "*.ucf-old", "*.ucf-dist", "*.pyc", "__pycache__"});
  // Regenerated on the endpoint (by ldconfig in a post-layer hook): written only where missing.
  r.m_do_not_override = list(doc, "do_not_override", {"/etc/ld.so.cache"});
  r.m_user_area = list(doc, "user_area", {"/home", "/root", "/srv"});
  return r;
}

nlohmann::json LayerRules::to_json() const {
  return {{"version", 1},           {"exclude", m_exclude},      {"exceptions", m_exceptions}, {"noise", m_noise},
          {"do_not_override", m_do_not_override}, {"user_area", m_user_area}};
}

bool LayerRules::in_user_area(std::string_view path) const {
  for (const auto& root : m_user_area)
    if (path.size() > root.size() && path.substr(0, root.size()) == root && path[root.size()] == '/') return true;
  return false;
}

bool LayerRules::is_user_area_root(std::string_view path) const {
  for (const auto& root : m_user_area)
    if (path == root) return true;
  return false;
}

bool LayerRules::excluded(std::string_view path) const {
  if (is_identity(path) || in_user_area(path)) return true;
  return any_matches(m_exclude, path) && !any_matches(m_exceptions, path);
}

bool LayerRules::noise(std::string_view path) const { return excluded(path) || any_matches(m_noise, path); }

bool LayerRules::do_not_override(std::string_view path) const { return any_matches(m_do_not_override, path); }

}  // namespace mirage::layer

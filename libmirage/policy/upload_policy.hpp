#pragma once
// The upload policy: which paths of an endpoint are protected (uploaded). A JSON document:
//   {"version": 1,
//    "unprotected": ["/proc", "/tmp", "lost+found", ...],   // rules
//    "exceptions":  ["/var/cache/keep-me"],                  // protected despite a rule
//    "user_area":   ["/home", "/root", "/srv"],               // never touched by layers
//    "restore_first": ["/opt/vpn"],                           // a streaming restore's minimal set, beyond the built-in one
//    "retention":   {"hourly": 24, ...}}                      // which snapshots to keep (retention.hpp)
// A rule that contains a '/' is anchored at the root ("/var/cache", "/var/log/*.gz") and
// also covers everything below a matching directory; a rule without one matches a
// name at any depth ("lost+found", "*.swp"). Globs are fnmatch(3) with FNM_PATHNAME.
// An unprotected directory is kept as an empty directory with its metadata (a mount
// point such as /proc restores as itself), its contents are not uploaded.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mirage::policy {

enum class Decision {
  protect,      ///< upload it (and, for a directory, its contents)
  skip,         ///< leave it out (a directory is kept empty)
  exceptions,   ///< an unprotected directory with exceptions below: descend, keep only those
};

/// Whether the directories above a path were classified already (a walk does that,
/// top down): then unprotected rules are matched against the path itself only.
enum class Ancestors { unchecked, checked };

class UploadPolicy {
 public:
  /// The documented default: /proc /sys /dev /run /tmp /var/tmp /var/cache lost+found
  /// and swap files unprotected; /home /root /srv the user area.
  static UploadPolicy defaults();
  /// Parses and validates a policy document; a field left out takes its default (an
  /// empty list given is kept empty). Throws Error(usage) naming the bad field.
  static UploadPolicy from_json(const nlohmann::json& doc);
  nlohmann::json to_json() const;

  /// Classifies a root-relative absolute path ("/var/cache/apt"). `inside_unprotected`
  /// is true below a directory classified `exceptions`.
  Decision classify(std::string_view path, bool inside_unprotected, Ancestors ancestors = Ancestors::unchecked) const;
  /// True when `path` is in the user area.
  bool in_user_area(std::string_view path) const;
  /// What a streaming restore writes whole before anything else (what boots and reaches
  /// the network): /etc /usr /bin /sbin /lib* /boot /var/lib/dpkg, and "restore_first".
  static const std::vector<std::string>& minimal_restore_set();
  /// True when `path` is in the minimal restore set (built in or this policy's).
  bool restore_first(std::string_view path) const;
  /// Adds an anchored unprotected rule (e.g. a swap file found in /proc/swaps).
  void add_unprotected(std::string rule) { m_unprotected.push_back(std::move(rule)); }

 private:
  std::vector<std::string> m_unprotected;
  std::vector<std::string> m_exceptions;
  std::vector<std::string> m_user_area;
  std::vector<std::string> m_restore_first;
};

/// A whole policy document (upload rules and "retention", see retention.hpp), validated
/// and with every default filled in; throws Error(usage) naming the bad field.
nlohmann::json policy_document(const nlohmann::json& doc);
/// The built-in "default" policy as a document.
nlohmann::json default_policy_document();

/// The array of non-empty strings at doc[key], nullopt when absent; throws Error(usage)
/// naming `what` and the key otherwise. (Rule lists, device lists, ...)
std::optional<std::vector<std::string>> string_list(const nlohmann::json& doc, const char* key, const std::string& what);

/// True when `rule` matches `path` itself or a directory above it (see the rule syntax).
bool rule_matches(std::string_view rule, std::string_view path);
/// True when `rule` matches `path` itself (not an ancestor).
bool rule_matches_here(std::string_view rule, std::string_view path);

}  // namespace mirage::policy
